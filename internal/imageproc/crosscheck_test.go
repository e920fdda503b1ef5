package imageproc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// TestPillowCrossCheck compares this package with the real Pillow (and transformers) on many
// generated cases. It is a development aid: it runs only when IMAGEPROC_PILLOW_PYTHON names a Python
// that has Pillow (and, for the whole pipeline, transformers), e.g.
//
//	IMAGEPROC_PILLOW_PYTHON=/tmp/venv/bin/python go test ./internal/imageproc/ -run PillowCrossCheck -v
//
// IMAGEPROC_CROSSCHECK_N sets the number of random resize cases (default 200).
func TestPillowCrossCheck(t *testing.T) {
	py := os.Getenv("IMAGEPROC_PILLOW_PYTHON")
	if py == "" {
		t.Skip("set IMAGEPROC_PILLOW_PYTHON to a Python with Pillow (and transformers) to cross-check against Pillow")
	}
	n := 200
	if s := os.Getenv("IMAGEPROC_CROSSCHECK_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	work := t.TempDir()
	var tasks []map[string]any
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// 1. Random resizes: sizes 1..700 each way, random content, every supported filter.
	type resizeCase struct {
		src    *RGB
		ow, oh int
		f      Filter
	}
	r := rand.New(rand.NewPCG(1, 2))
	filters := []Filter{Bicubic, Bicubic, Bicubic, Bicubic, Bilinear, Lanczos, Box, Hamming, MKS2013, MKS2021}
	var resizes []resizeCase
	for i := 0; i < n; i++ {
		w, h := 1+r.IntN(700), 1+r.IntN(700)
		ow, oh := 1+r.IntN(700), 1+r.IntN(700)
		if i%5 == 0 { // keep one side unchanged now and then (single-pass resizes)
			if r.IntN(2) == 0 {
				ow = w
			} else {
				oh = h
			}
		}
		c := resizeCase{randomRGB(r, w, h, r.IntN(2) == 0), ow, oh, filters[r.IntN(len(filters))]}
		resizes = append(resizes, c)
		in := fmt.Sprintf("r%d.rgb", i)
		write(in, c.src.Pix)
		tasks = append(tasks, map[string]any{"kind": "resize", "in": in, "w": w, "h": h, "ow": ow, "oh": oh,
			"filter": int(c.f), "out": fmt.Sprintf("r%d.out", i)})
	}

	// 2. Decoding: every Go-encodable format and colour model, plus JPEG/WebP made by Pillow.
	var decodes []string
	addDecode := func(name string, transpose bool) {
		decodes = append(decodes, name)
		tasks = append(tasks, map[string]any{"kind": "decode", "in": name, "out": name + ".out", "transpose": transpose})
	}
	for si, size := range [][2]int{{37, 23}, {64, 48}, {1, 1}, {2, 3}, {5, 2}} {
		src := pattern(size[0], size[1], uint64(si))
		for name, img := range colourModels(src) {
			base := fmt.Sprintf("s%d_%s", si, name)
			write(base+".png", encodePNG(t, img))
			addDecode(base+".png", false)
			var buf bytes.Buffer
			if err := tiff.Encode(&buf, img, &tiff.Options{Compression: tiff.Deflate}); err == nil {
				write(base+".tiff", buf.Bytes())
				addDecode(base+".tiff", false)
			}
			buf.Reset()
			if name != "Gray16" && name != "NRGBA64" && name != "RGBA64" && name != "CMYK" {
				if err := bmp.Encode(&buf, img); err == nil {
					write(base+".bmp", buf.Bytes())
					addDecode(base+".bmp", false)
				}
			}
		}
		// GIF: a frame smaller than the screen, with and without a transparent index.
		for k, trans := range []bool{false, true} {
			pal := color.Palette{color.RGBA{10, 20, 30, 255}, color.RGBA{200, 100, 50, 255}, color.RGBA{0, 255, 0, 255}}
			if trans {
				pal[2] = color.RGBA{}
			}
			fr := image.NewPaletted(image.Rect(size[0]/3, size[1]/3, size[0], size[1]), pal)
			for i := range fr.Pix {
				fr.Pix[i] = uint8(i % 3)
			}
			var buf bytes.Buffer
			g := &gif.GIF{Image: []*image.Paletted{fr}, Delay: []int{0},
				Config: image.Config{ColorModel: pal, Width: size[0], Height: size[1]}, BackgroundIndex: 1}
			if err := gif.EncodeAll(&buf, g); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("s%d_gif%d.gif", si, k)
			write(name, buf.Bytes())
			addDecode(name, false)
		}
		// Go's own JPEG encoder (no JFIF marker, 4:2:0) and a greyscale one.
		for k, img := range []image.Image{src, colourModels(src)["Gray"]} {
			var buf bytes.Buffer
			if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("s%d_gojpeg%d.jpg", si, k)
			write(name, buf.Bytes())
			addDecode(name, false)
		}
		// Pillow-made JPEGs and WebPs.
		srcName := fmt.Sprintf("s%d_src.png", si)
		write(srcName, encodePNG(t, src))
		encs := []struct {
			ext, format string
			params      map[string]any
		}{
			{"q95_444.jpg", "JPEG", map[string]any{"convert": "RGB", "quality": 95, "subsampling": 0}},
			{"q75_422.jpg", "JPEG", map[string]any{"convert": "RGB", "quality": 75, "subsampling": 1}},
			{"q50_420.jpg", "JPEG", map[string]any{"convert": "RGB", "quality": 50, "subsampling": 2}},
			{"prog_420.jpg", "JPEG", map[string]any{"convert": "RGB", "quality": 85, "progressive": true}},
			{"prog_444.jpg", "JPEG", map[string]any{"convert": "RGB", "quality": 90, "progressive": true, "subsampling": 0}},
			{"opt_rst.jpg", "JPEG", map[string]any{"convert": "RGB", "quality": 80, "optimize": true, "restart_marker_blocks": 3}},
			{"prog_rst.jpg", "JPEG", map[string]any{"convert": "RGB", "quality": 80, "progressive": true, "restart_marker_rows": 1}},
			{"gray.jpg", "JPEG", map[string]any{"convert": "L", "quality": 90}},
			{"gray_prog.jpg", "JPEG", map[string]any{"convert": "L", "quality": 90, "progressive": true}},
			{"cmyk.jpg", "JPEG", map[string]any{"convert": "CMYK", "quality": 90}},
			{"lossless.webp", "WEBP", map[string]any{"lossless": true}},
			{"lossless_rgb.webp", "WEBP", map[string]any{"convert": "RGB", "lossless": true}},
			{"lossy.webp", "WEBP", map[string]any{"convert": "RGB", "quality": 80}},
			{"lossy_alpha.webp", "WEBP", map[string]any{"quality": 80}},
		}
		for _, e := range encs {
			name := fmt.Sprintf("s%d_%s", si, e.ext)
			tasks = append(tasks, map[string]any{"kind": "encode", "in": srcName, "out": name, "format": e.format, "params": e.params})
			addDecode(name, false)
		}
		// EXIF orientation on a JPEG (compared with ImageOps.exif_transpose).
		if si == 0 {
			for o := 1; o <= 8; o++ {
				for _, f := range []struct{ ext, format string }{{"jpg", "JPEG"}, {"png", "PNG"}, {"webp", "WEBP"}} {
					name := fmt.Sprintf("orient%d.%s", o, f.ext)
					params := map[string]any{"convert": "RGB", "orientation": o}
					if f.format == "WEBP" {
						params["lossless"] = true
					}
					tasks = append(tasks, map[string]any{"kind": "encode", "in": srcName, "out": name, "format": f.format, "params": params})
					addDecode(name, true)
				}
			}
		}
	}

	// 3. The whole pipeline through transformers' CLIPImageProcessorPil, for a few of the files.
	model, _ := filepath.Abs(filepath.Join(goldenDir, "models", "tiny_quickgelu"))
	var pipes []string
	if _, err := os.Stat(model); err == nil && os.Getenv("IMAGEPROC_CROSSCHECK_PIPELINE") != "0" {
		if err := os.Symlink(model, filepath.Join(work, "model")); err != nil {
			t.Fatal(err)
		}
		for _, name := range decodes {
			if strings.HasPrefix(name, "s0_") || strings.HasPrefix(name, "s1_") || strings.HasPrefix(name, "orient") {
				pipes = append(pipes, name)
				tasks = append(tasks, map[string]any{"kind": "pipeline", "in": name, "model": "model", "out": name + ".f32"})
			}
		}
	}

	manifest, _ := json.Marshal(tasks)
	write("manifest.json", manifest)
	cmd := exec.Command(py, filepath.Join("testdata", "pillow_crosscheck.py"), work)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference script: %v\n%s", err, out)
	}

	// Compare resizes.
	bad := 0
	for i, c := range resizes {
		want, err := os.ReadFile(filepath.Join(work, fmt.Sprintf("r%d.out", i)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := Resize(c.src, c.ow, c.oh, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if d := countDiff(got.Pix, want); d > 0 {
			bad++
			t.Errorf("resize %dx%d -> %dx%d %v: %d samples differ", c.src.Width, c.src.Height, c.ow, c.oh, c.f, d)
		}
	}
	t.Logf("resize: %d random cases, %d differ", len(resizes), bad)

	// Compare decodes.
	exact, approx := 0, 0
	for _, name := range decodes {
		want, err := os.ReadFile(filepath.Join(work, name+".out"))
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(work, name))
		if err != nil {
			t.Fatal(err)
		}
		got, gerr := Decode(data, &DecodeOptions{ApplyOrientation: strings.HasPrefix(name, "orient")})
		if bytes.HasPrefix(want, []byte("ERR")) {
			if gerr == nil {
				t.Errorf("%s: Pillow fails (%s) but Decode succeeds", name, want)
			}
			continue
		}
		if gerr != nil {
			t.Errorf("%s: %v", name, gerr)
			continue
		}
		nl := bytes.IndexByte(want, '\n')
		var w, h int
		fmt.Sscanf(string(want[:nl]), "%d %d", &w, &h)
		if w != got.Width || h != got.Height {
			t.Errorf("%s: size %dx%d, Pillow %dx%d", name, got.Width, got.Height, w, h)
			continue
		}
		d, maxd := countDiff(got.Pix, want[nl+1:]), maxAbsDiff(got.Pix, want[nl+1:])
		if d == 0 {
			exact++
			continue
		}
		approx++
		t.Errorf("%s: %d of %d samples differ from Pillow, max %d", name, d, len(got.Pix), maxd)
	}
	t.Logf("decode: %d files, %d identical to Pillow, %d differ", len(decodes), exact, approx)

	// Compare the pipeline.
	cfg := DefaultConfig()
	var worst float64
	for _, name := range pipes {
		want := readF32(t, filepath.Join(work, name+".f32"))
		data, _ := os.ReadFile(filepath.Join(work, name))
		img, err := Decode(data, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got := make([]float32, len(want))
		if err := cfg.Preprocess(img, got); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var maxd float64
		nd := 0
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				nd++
				maxd = max(maxd, math.Abs(float64(got[i]-want[i])))
			}
		}
		worst = max(worst, maxd)
		if nd > 0 {
			t.Errorf("pipeline %s: %d values differ, max %g", name, nd, maxd)
		}
	}
	t.Logf("pipeline: %d files through CLIPImageProcessorPil, max |diff| %g", len(pipes), worst)
}

func countDiff(a, b []byte) int {
	if len(a) != len(b) {
		return max(len(a), len(b))
	}
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func maxAbsDiff(a, b []byte) int {
	m := 0
	for i := range min(len(a), len(b)) {
		d := int(a[i]) - int(b[i])
		m = max(m, d, -d)
	}
	return m
}
