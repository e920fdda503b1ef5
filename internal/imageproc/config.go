package imageproc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/sdsafety/safety/internal/fileread"
)

// ConfigFileName is the name of the preprocessing configuration in a Hugging Face model directory.
const ConfigFileName = "preprocessor_config.json"

// maxSide bounds every configured size (resize target, crop) to keep allocations sane.
const maxSide = 16384

// Size is the "size" entry of the configuration, in one of transformers' forms, tried in this order:
// ShortestEdge (with an optional LongestEdge cap), then Height×Width. Zero fields are absent.
type Size struct {
	ShortestEdge int
	LongestEdge  int
	Height       int
	Width        int
}

// Config holds the CLIPImageProcessor parameters of preprocessor_config.json.
type Config struct {
	// DoConvertRGB is recorded for completeness: images here are always RGB (Decode/FromImage convert
	// them with Pillow's semantics), which is what the reference does when it is true.
	DoConvertRGB bool
	DoResize     bool
	Size         Size
	Resample     Filter
	DoCenterCrop bool
	CropHeight   int
	CropWidth    int
	DoRescale    bool
	// RescaleFactor multiplies the 8-bit values (in float64, then rounded to float32).
	RescaleFactor float64
	DoNormalize   bool
	// ImageMean and ImageStd are per channel (R, G, B); they are used as float32, like numpy does.
	ImageMean [3]float64
	ImageStd  [3]float64
}

// DefaultConfig returns CLIPImageProcessor's defaults, which are also the Stable Diffusion v1 feature
// extractor's values: shortest edge 224, BICUBIC, centre crop 224×224, rescale 1/255, OpenAI CLIP
// mean and std.
func DefaultConfig() Config {
	return Config{
		DoConvertRGB:  true,
		DoResize:      true,
		Size:          Size{ShortestEdge: 224},
		Resample:      Bicubic,
		DoCenterCrop:  true,
		CropHeight:    224,
		CropWidth:     224,
		DoRescale:     true,
		RescaleFactor: 1.0 / 255,
		DoNormalize:   true,
		ImageMean:     [3]float64{0.48145466, 0.4578275, 0.40821073},
		ImageStd:      [3]float64{0.26862954, 0.26130258, 0.27577711},
	}
}

// LoadConfig reads a preprocessor_config.json. path may also name the model directory holding it.
// A missing file gives an error that wraps os.ErrNotExist, so a caller can fall back to
// DefaultConfig.
func LoadConfig(path string) (Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, ConfigFileName)
	}
	data, err := fileread.ReadFile(path, fileread.ConfigLimit)
	if err != nil {
		return Config{}, fmt.Errorf("imageproc: load config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%w (file %s)", err, path)
	}
	return c, nil
}

// ParseConfig parses the JSON of a preprocessor_config.json. Missing or null keys take the
// CLIPImageProcessor defaults (DefaultConfig); unknown keys are ignored. Accepted forms: "size" as an
// integer (shortest edge), [height, width] or an object with "shortest_edge" (optionally
// "longest_edge") or "height" and "width"; "crop_size" as an integer, [height, width] or
// {"height", "width"}; "image_mean"/"image_std" as a list of 3 numbers or one number; "resample" as
// Pillow's number or name. The result is validated (see Config.Validate).
func ParseConfig(data []byte) (Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("imageproc: parse config: %w", err)
	}
	c := DefaultConfig()
	var errs []error
	get := func(key string, fn func(json.RawMessage) error) {
		v, ok := raw[key]
		if !ok || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return
		}
		if err := fn(v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	boolean := func(dst *bool) func(json.RawMessage) error {
		return func(v json.RawMessage) error { return json.Unmarshal(v, dst) }
	}
	get("do_convert_rgb", boolean(&c.DoConvertRGB))
	get("do_resize", boolean(&c.DoResize))
	get("do_center_crop", boolean(&c.DoCenterCrop))
	get("do_rescale", boolean(&c.DoRescale))
	get("do_normalize", boolean(&c.DoNormalize))
	get("size", func(v json.RawMessage) error {
		s, err := parseSize(v)
		c.Size = s
		return err
	})
	get("crop_size", func(v json.RawMessage) error {
		s, err := parseSize(v)
		if err != nil {
			return err
		}
		switch {
		case s.Height > 0 && s.Width > 0:
			c.CropHeight, c.CropWidth = s.Height, s.Width
		case s.ShortestEdge > 0 && isNumber(v): // a plain integer means a square crop
			c.CropHeight, c.CropWidth = s.ShortestEdge, s.ShortestEdge
		default:
			return errors.New(`want an integer, [height, width] or {"height", "width"}`)
		}
		return nil
	})
	get("rescale_factor", func(v json.RawMessage) error { return json.Unmarshal(v, &c.RescaleFactor) })
	get("image_mean", func(v json.RawMessage) error { return parseTriple(v, &c.ImageMean) })
	get("image_std", func(v json.RawMessage) error { return parseTriple(v, &c.ImageStd) })
	get("resample", func(v json.RawMessage) error {
		f, err := parseFilter(v)
		c.Resample = f
		return err
	})
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("imageproc: parse config: %w", errors.Join(errs...))
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func isNumber(v json.RawMessage) bool {
	var f float64
	return json.Unmarshal(v, &f) == nil
}

// parseSize reads an integer (as ShortestEdge), [height, width] or an object.
func parseSize(v json.RawMessage) (Size, error) {
	var n float64
	if json.Unmarshal(v, &n) == nil {
		i, err := toInt(n)
		return Size{ShortestEdge: i}, err
	}
	var list []float64
	if json.Unmarshal(v, &list) == nil {
		switch len(list) {
		case 1:
			i, err := toInt(list[0])
			return Size{ShortestEdge: i}, err
		case 2:
			h, err1 := toInt(list[0])
			w, err2 := toInt(list[1])
			return Size{Height: h, Width: w}, errors.Join(err1, err2)
		}
		return Size{}, fmt.Errorf("want 1 or 2 elements, got %d", len(list))
	}
	var obj map[string]*float64
	if err := json.Unmarshal(v, &obj); err != nil {
		return Size{}, errors.New("want an integer, a list or an object")
	}
	var s Size
	var errs []error
	for key, val := range obj {
		if val == nil {
			continue
		}
		i, err := toInt(*val)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			continue
		}
		switch key {
		case "shortest_edge":
			s.ShortestEdge = i
		case "longest_edge":
			s.LongestEdge = i
		case "height":
			s.Height = i
		case "width":
			s.Width = i
		default:
			errs = append(errs, fmt.Errorf("unsupported key %q", key))
		}
	}
	return s, errors.Join(errs...)
}

func toInt(f float64) (int, error) {
	if f != math.Trunc(f) || f < 0 || f > maxSide {
		return 0, fmt.Errorf("%v is not an integer in [0, %d]", f, maxSide)
	}
	return int(f), nil
}

func parseTriple(v json.RawMessage, dst *[3]float64) error {
	var one float64
	if json.Unmarshal(v, &one) == nil {
		*dst = [3]float64{one, one, one}
		return nil
	}
	var list []float64
	if err := json.Unmarshal(v, &list); err != nil {
		return errors.New("want a number or a list of 3 numbers")
	}
	if len(list) != 3 {
		return fmt.Errorf("want 3 values (RGB), got %d", len(list))
	}
	copy(dst[:], list)
	return nil
}

func parseFilter(v json.RawMessage) (Filter, error) {
	var n float64
	if json.Unmarshal(v, &n) == nil {
		if n != math.Trunc(n) || n < 0 || n > 7 {
			return 0, fmt.Errorf("unknown filter %v", n)
		}
		return Filter(n), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return 0, errors.New("want a Pillow filter number or name")
	}
	for f := Nearest; f <= MKS2021; f++ {
		if strings.EqualFold(s, f.String()) {
			return f, nil
		}
	}
	return 0, fmt.Errorf("unknown filter %q", s)
}

// Validate checks that the configuration can be applied and keeps the image: positive sizes within
// 16384, a resize target at least a quarter of the crop, a supported filter, finite means and finite non-zero
// stds, and a rescale and normalisation that map the 256 levels of each channel to distinct finite
// values.
func (c Config) Validate() error {
	var errs []error
	if c.DoResize {
		s := c.Size
		switch {
		case s.ShortestEdge > 0:
			if s.LongestEdge != 0 && s.LongestEdge < s.ShortestEdge {
				errs = append(errs, fmt.Errorf("size: longest_edge %d < shortest_edge %d", s.LongestEdge, s.ShortestEdge))
			}
		case s.Height > 0 && s.Width > 0:
		default:
			errs = append(errs, fmt.Errorf(`size %+v: want "shortest_edge" or "height" and "width"`, s))
		}
		for _, v := range []int{s.ShortestEdge, s.LongestEdge, s.Height, s.Width} {
			if v < 0 || v > maxSide {
				errs = append(errs, fmt.Errorf("size %+v: values must be in [1, %d]", s, maxSide))
				break
			}
		}
		if _, _, ok := c.Resample.kernel(); !ok {
			errs = append(errs, fmt.Errorf("resample: unsupported filter %v (supported: BICUBIC, BILINEAR, LANCZOS, BOX, HAMMING, MKS2013, MKS2021)", c.Resample))
		}
	}
	if c.DoCenterCrop && (c.CropHeight <= 0 || c.CropWidth <= 0 || c.CropHeight > maxSide || c.CropWidth > maxSide) {
		errs = append(errs, fmt.Errorf("crop_size %dx%d: values must be in [1, %d]", c.CropHeight, c.CropWidth, maxSide))
	}
	if c.DoRescale && (math.IsNaN(c.RescaleFactor) || math.IsInf(c.RescaleFactor, 0)) {
		errs = append(errs, fmt.Errorf("rescale_factor %v is not finite", c.RescaleFactor))
	}
	if c.DoNormalize {
		for i := range 3 {
			m, s := float32(c.ImageMean[i]), float32(c.ImageStd[i])
			if math.IsNaN(float64(m)) || math.IsInf(float64(m), 0) {
				errs = append(errs, fmt.Errorf("image_mean[%d] = %v is not finite", i, c.ImageMean[i]))
			}
			if s == 0 || math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
				errs = append(errs, fmt.Errorf("image_std[%d] = %v must be finite and non-zero", i, c.ImageStd[i]))
			}
		}
	}
	if c.DoResize && c.DoCenterCrop {
		// A resize target under a quarter of the crop leaves a crop that is mostly padding: the image
		// shrinks to a few pixels (size 1: one row or column) and the model sees almost nothing of it.
		s := c.Size
		short, cropShort := s.ShortestEdge, min(c.CropHeight, c.CropWidth)
		if short == 0 {
			short = min(s.Height, s.Width)
		}
		if short > 0 && 4*short < cropShort {
			errs = append(errs, fmt.Errorf("size %+v: the image would be resized to less than a quarter of the %dx%d crop",
				s, c.CropWidth, c.CropHeight))
		}
	}
	if len(errs) == 0 {
		// The 8-bit levels must stay distinct and finite after rescale and normalise: rescale_factor 0
		// (or one so small or large that float32 rounds it away) would give every image the same input.
		lut := c.lut()
		for ch := range 3 {
			if err := distinctLevels(&lut[ch]); err != nil {
				errs = append(errs, fmt.Errorf("channel %d: %w (check rescale_factor, image_mean, image_std)", ch, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("imageproc: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// distinctLevels checks that the 256 values of one channel's lookup table are finite and pairwise
// distinct (they are monotonic, so neighbours suffice).
func distinctLevels(lut *[256]float32) error {
	for v, x := range lut {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("level %d becomes %v", v, x)
		}
		if v > 0 && x == lut[v-1] {
			return fmt.Errorf("levels %d and %d both become %v: the input would be erased", v-1, v, x)
		}
	}
	return nil
}
