package imageproc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sdV1Config = `{
  "crop_size": 224,
  "do_center_crop": true,
  "do_convert_rgb": true,
  "do_normalize": true,
  "do_resize": true,
  "feature_extractor_type": "CLIPFeatureExtractor",
  "image_mean": [0.48145466, 0.4578275, 0.40821073],
  "image_std": [0.26862954, 0.26130258, 0.27577711],
  "resample": 3,
  "size": 224
}`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(sdV1Config))
	if err != nil {
		t.Fatal(err)
	}
	if c != DefaultConfig() {
		t.Fatalf("SD v1 config parsed as %+v, want the defaults %+v", c, DefaultConfig())
	}
	cases := []struct {
		json  string
		check func(Config) bool
	}{
		{`{}`, func(c Config) bool { return c == DefaultConfig() }},
		{`{"size": null, "crop_size": null}`, func(c Config) bool { return c == DefaultConfig() }},
		{`{"size": {"shortest_edge": 336}}`, func(c Config) bool { return c.Size == Size{ShortestEdge: 336} }},
		{`{"size": {"shortest_edge": 256, "longest_edge": 512}}`, func(c Config) bool { return c.Size == Size{ShortestEdge: 256, LongestEdge: 512} }},
		{`{"size": {"height": 240, "width": 320}}`, func(c Config) bool { return c.Size == Size{Height: 240, Width: 320} }},
		{`{"size": [240, 320]}`, func(c Config) bool { return c.Size == Size{Height: 240, Width: 320} }},
		{`{"crop_size": {"height": 200, "width": 100}}`, func(c Config) bool { return c.CropHeight == 200 && c.CropWidth == 100 }},
		{`{"crop_size": [200, 100]}`, func(c Config) bool { return c.CropHeight == 200 && c.CropWidth == 100 }},
		{`{"crop_size": 256}`, func(c Config) bool { return c.CropHeight == 256 && c.CropWidth == 256 }},
		{`{"do_rescale": false, "do_normalize": false}`, func(c Config) bool { return !c.DoRescale && !c.DoNormalize }},
		{`{"rescale_factor": 0.5}`, func(c Config) bool { return c.RescaleFactor == 0.5 }},
		{`{"image_mean": 0.5, "image_std": [1, 2, 3]}`, func(c Config) bool {
			return c.ImageMean == [3]float64{0.5, 0.5, 0.5} && c.ImageStd == [3]float64{1, 2, 3}
		}},
		{`{"resample": 2}`, func(c Config) bool { return c.Resample == Bilinear }},
		{`{"resample": 1}`, func(c Config) bool { return c.Resample == Lanczos }},
		{`{"resample": "bicubic"}`, func(c Config) bool { return c.Resample == Bicubic }},
		{`{"do_resize": false, "resample": 0}`, func(c Config) bool { return !c.DoResize }},
	}
	for _, tc := range cases {
		c, err := ParseConfig([]byte(tc.json))
		if err != nil {
			t.Errorf("%s: %v", tc.json, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("%s: parsed as %+v", tc.json, c)
		}
	}
	bad := []string{
		`not json`,
		`[]`,
		`{"size": "big"}`,
		`{"size": {"shortest_edge": 224.5}}`,
		`{"size": {"longest_edge": 224}}`,
		`{"size": {"max_height": 224, "max_width": 224}}`,
		`{"size": 0}`,
		`{"size": 100000}`,
		`{"crop_size": {"height": 224}}`,
		`{"crop_size": -1}`,
		`{"resample": 0}`,
		`{"resample": 9}`,
		`{"resample": "cubic"}`,
		`{"image_std": [1, 0, 1]}`,
		`{"image_mean": [1, 2]}`,
		`{"do_resize": "yes"}`,
	}
	for _, j := range bad {
		if _, err := ParseConfig([]byte(j)); err == nil {
			t.Errorf("%s: accepted", j)
		} else if !strings.HasPrefix(err.Error(), "imageproc: ") {
			t.Errorf("%s: error %q lacks the package prefix", j, err)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadConfig(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v, want os.ErrNotExist", err)
	}
	path := filepath.Join(dir, ConfigFileName)
	if err := os.WriteFile(path, []byte(`{"size": 336, "crop_size": 336}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, path} {
		c, err := LoadConfig(p)
		if err != nil {
			t.Fatal(err)
		}
		if c.Size.ShortestEdge != 336 || c.CropWidth != 336 {
			t.Errorf("LoadConfig(%s) = %+v", p, c)
		}
	}
	if err := os.WriteFile(path, []byte(`{"size": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("bad file: %v", err)
	}
}
