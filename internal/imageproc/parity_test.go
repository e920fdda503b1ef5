package imageproc

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixtureDir is the shared parity fixture (made by the Python reference), relative to this package.
const fixtureDir = "../../../shared/parity"

func loadFixtureConfig(t *testing.T) Config {
	t.Helper()
	c, err := LoadConfig(filepath.Join(fixtureDir, "model"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
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

// TestParityFixture preprocesses every fixture image and compares with the reference's dump:
// PNGs bit for bit, other codecs within two 8-bit steps (0.03 after normalisation).
func TestParityFixture(t *testing.T) {
	imgs, _ := filepath.Glob(filepath.Join(fixtureDir, "images", "*"))
	if len(imgs) == 0 {
		t.Skipf("parity fixture not found at %s (shared/parity beside the checkout)", fixtureDir)
	}
	cfg := loadFixtureConfig(t)
	if cfg.Size != (Size{ShortestEdge: 224}) || cfg.CropWidth != 224 || cfg.Resample != Bicubic {
		t.Fatalf("fixture config parsed as %+v", cfg)
	}
	for _, path := range imgs {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			img, err := DecodeFile(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := readF32(t, filepath.Join(fixtureDir, "expected", name+".pixel_values.f32"))
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
			if strings.HasSuffix(name, ".png") {
				if nDiff != 0 {
					t.Errorf("PNG input must be bit-exact: %d values differ (max %.6g)", nDiff, maxDiff)
				}
			} else if maxDiff > 0.03 {
				t.Errorf("max |diff| %.6g > 0.03", maxDiff)
			}
		})
	}
}
