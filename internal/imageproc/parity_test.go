package imageproc

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The reference's preprocessed pixel values: the tracked golden files (testdata/golden, made by
// reference/make_golden.py with transformers' CLIPImageProcessorPil) and the independent parity
// fixture beside the checkout (../shared/parity, not tracked), relative to this package.
const (
	goldenDir  = "../../testdata/golden"
	fixtureDir = "../../../shared/parity"
)

// goldenImages are the tracked golden images (testdata/golden/README.md).
var goldenImages = []string{"sd_512x512.png", "rgb_300x200.png", "rgba_100x260.png", "gray_64x64.png",
	"gray16_180x120.png", "palette_224x224.png", "wide_900x120.png", "photo_320x240.jpg", "cmyk_200x160.jpg",
	"anim_160x200.gif", "image_150x100.bmp", "image_130x170.tiff", "image_180x180.webp"}

func loadConfigT(t *testing.T, dir string) Config {
	t.Helper()
	c, err := LoadConfig(dir)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if c.Size != (Size{ShortestEdge: 224}) || c.CropWidth != 224 || c.Resample != Bicubic {
		t.Fatalf("%s: config parsed as %+v", dir, c)
	}
	return c
}

func readF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestGoldenPixels preprocesses every tracked golden image with both forms of the SD v1
// preprocessor config (the hub's legacy one and transformers 5's) and compares with the reference's
// dump: every lossless format bit for bit, JPEG within two 8-bit steps (0.03 after normalisation).
func TestGoldenPixels(t *testing.T) {
	for _, model := range []string{"tiny_quickgelu", "tiny_defaults"} {
		t.Run(model, func(t *testing.T) {
			cfg := loadConfigT(t, filepath.Join(goldenDir, "models", model))
			for _, name := range goldenImages {
				comparePixelDump(t, cfg, filepath.Join(goldenDir, "images", name),
					filepath.Join(goldenDir, "pixels", name+".pixel_values.f32"))
			}
		})
	}
}

// TestParityFixture does the same for the independent parity fixture, when it is beside the checkout.
func TestParityFixture(t *testing.T) {
	if _, err := os.Stat(fixtureDir); err != nil {
		t.Skipf("independent parity fixture %s not beside the checkout (not tracked; make parity uses it): %v", fixtureDir, err)
	}
	imgs, _ := filepath.Glob(filepath.Join(fixtureDir, "images", "*"))
	if len(imgs) == 0 {
		t.Fatalf("no images in %s", fixtureDir)
	}
	cfg := loadConfigT(t, filepath.Join(fixtureDir, "model"))
	for _, path := range imgs {
		comparePixelDump(t, cfg, path, filepath.Join(fixtureDir, "expected", filepath.Base(path)+".pixel_values.f32"))
	}
}

// comparePixelDump preprocesses one image in a subtest and compares it with the reference's dump:
// JPEG within two 8-bit steps (0.03 after normalisation), every other format bit for bit.
func comparePixelDump(t *testing.T, cfg Config, path, dump string) {
	t.Helper()
	name := filepath.Base(path)
	t.Run(name, func(t *testing.T) {
		img, err := DecodeFile(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := readF32(t, dump)
		got := make([]float32, 3*224*224)
		if err := cfg.Preprocess(img, got); err != nil {
			t.Fatal(err)
		}
		if len(want) != len(got) {
			t.Fatalf("expected dump has %d values, want %d", len(want), len(got))
		}
		var maxDiff float64
		nDiff := 0
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				nDiff++
				maxDiff = max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
			}
		}
		t.Logf("%s: %dx%d, %d of %d values differ, max |diff| %.6g", name, img.Width, img.Height, nDiff, len(got), maxDiff)
		if ext := strings.ToLower(filepath.Ext(name)); ext != ".jpg" && ext != ".jpeg" {
			if nDiff != 0 {
				t.Errorf("lossless input must be bit-exact: %d values differ (max %.6g)", nDiff, maxDiff)
			}
		} else if maxDiff > 0.03 {
			t.Errorf("max |diff| %.6g > 0.03", maxDiff)
		}
	})
}
