package safety

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"testing"
)

// testPattern is a busy w×h image (stripes, checkerboard, gradient) with bounds starting at (ox, oy).
func testPattern(w, h, ox, oy int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(ox, oy, ox+w, oy+h))
	for y := range h {
		for x := range w {
			v := uint8(0)
			if (x/3+y/3)%2 == 0 {
				v = 255
			}
			m.SetNRGBA(ox+x, oy+y, color.NRGBA{R: v, G: uint8(x * 255 / max(w-1, 1)), B: uint8(y * 7), A: 255})
		}
	}
	return m
}

// channelVariance is the variance of one channel over the image.
func channelVariance(m *image.NRGBA, c int) float64 {
	var s, s2, n float64
	b := m.Bounds()
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			v := float64(m.Pix[y*m.Stride+4*x+c])
			s += v
			s2 += v * v
			n++
		}
	}
	mean := s / n
	return s2/n - mean*mean
}

func TestCensor(t *testing.T) {
	src := testPattern(97, 61, 5, -3)
	for _, tc := range []struct {
		name  string
		fn    func(image.Image) *image.NRGBA
		check func(t *testing.T, out *image.NRGBA)
	}{
		{"black", CensorBlack, func(t *testing.T, out *image.NRGBA) {
			for i := 0; i < len(out.Pix); i += 4 {
				if p := out.Pix[i : i+4]; p[0] != 0 || p[1] != 0 || p[2] != 0 || p[3] != 255 {
					t.Fatalf("pixel %d = %v, want 0 0 0 255", i/4, p)
				}
			}
		}},
		{"blur", func(m image.Image) *image.NRGBA { return CensorBlur(m, 6) }, func(t *testing.T, out *image.NRGBA) {
			for c := range 3 {
				before, after := channelVariance(src, c), channelVariance(out, c)
				t.Logf("channel %d: variance %.1f → %.1f", c, before, after)
				if c == 0 && after > before/20 { // the 3-pixel checkerboard must be wiped out
					t.Errorf("channel %d: variance %.1f → %.1f, want a reduction by 20× or more", c, before, after)
				}
				if after >= before {
					t.Errorf("channel %d: variance %.1f → %.1f did not decrease", c, before, after)
				}
			}
			for i := 3; i < len(out.Pix); i += 4 {
				if out.Pix[i] != 255 {
					t.Fatalf("pixel %d: alpha %d, want 255", i/4, out.Pix[i])
				}
			}
		}},
		{"blur_auto", func(m image.Image) *image.NRGBA { return CensorBlur(m, 0) }, func(t *testing.T, out *image.NRGBA) {
			if before, after := channelVariance(src, 0), channelVariance(out, 0); after > before/20 {
				t.Errorf("variance %.1f → %.1f", before, after)
			}
		}},
		{"pixelate", func(m image.Image) *image.NRGBA { return CensorPixelate(m, 8) }, func(t *testing.T, out *image.NRGBA) {
			checkBlocks(t, out, 8)
		}},
		{"pixelate_auto", func(m image.Image) *image.NRGBA { return CensorPixelate(m, -1) }, func(t *testing.T, out *image.NRGBA) {
			checkBlocks(t, out, 8) // max(8, 97/16)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := append([]uint8(nil), src.Pix...)
			out := tc.fn(src)
			if out == nil || out.Bounds() != src.Bounds() {
				t.Fatalf("bounds %v, want %v", out.Bounds(), src.Bounds())
			}
			if string(orig) != string(src.Pix) {
				t.Error("the source image was modified")
			}
			tc.check(t, out)
			if tc.fn(nil) != nil {
				t.Error("nil image gave a non-nil result")
			}
		})
	}
}

// checkBlocks checks that every block×block square (from the top-left corner) is one colour, and
// that it is the square's mean colour.
func checkBlocks(t *testing.T, out *image.NRGBA, block int) {
	t.Helper()
	src := testPattern(out.Bounds().Dx(), out.Bounds().Dy(), out.Bounds().Min.X, out.Bounds().Min.Y)
	b := out.Bounds()
	for by := 0; by < b.Dy(); by += block {
		for bx := 0; bx < b.Dx(); bx += block {
			first := out.Pix[by*out.Stride+4*bx : by*out.Stride+4*bx+4]
			var sum [3]float64
			n := 0
			for y := by; y < min(by+block, b.Dy()); y++ {
				for x := bx; x < min(bx+block, b.Dx()); x++ {
					p := out.Pix[y*out.Stride+4*x : y*out.Stride+4*x+4]
					if string(p) != string(first) {
						t.Fatalf("block (%d, %d): pixel (%d, %d) = %v, block colour %v", bx, by, x, y, p, first)
					}
					for c := range 3 {
						sum[c] += float64(src.Pix[y*src.Stride+4*x+c])
					}
					n++
				}
			}
			for c := range 3 {
				if mean := sum[c] / float64(n); math.Abs(mean-float64(first[c])) > 0.51 {
					t.Fatalf("block (%d, %d) channel %d: %d, mean %.2f", bx, by, c, first[c], mean)
				}
			}
		}
	}
}

// TestCensorTransparent: blurring and pixelating do not bleed the colour of fully transparent pixels.
func TestCensorTransparent(t *testing.T) {
	m := image.NewNRGBA(image.Rect(0, 0, 16, 16))
	for i := 0; i < len(m.Pix); i += 4 {
		m.Pix[i], m.Pix[i+3] = 255, 0 // red, fully transparent
	}
	m.SetNRGBA(3, 3, color.NRGBA{G: 255, A: 255})
	for name, out := range map[string]*image.NRGBA{"blur": CensorBlur(m, 2), "pixelate": CensorPixelate(m, 8)} {
		p := out.NRGBAAt(3, 3)
		if p.A == 0 || p.R != 0 || p.G != 255 {
			t.Errorf("%s: pixel (3, 3) = %v, want pure green with some alpha", name, p)
		}
	}
	if got := CensorBlack(m).NRGBAAt(0, 0); got != (color.NRGBA{A: 255}) {
		t.Errorf("black: %v", got)
	}
}

func ExampleCensorPixelate() {
	// A 4×2 image: left half white, right half black.
	img := image.NewGray(image.Rect(0, 0, 4, 2))
	for y := range 2 {
		for x := range 2 {
			img.SetGray(x, y, color.Gray{Y: 255})
		}
	}
	out := CensorPixelate(img, 4) // one 4×4 block (cut to 4×2): the mean grey
	fmt.Println(out.Bounds().Dx(), out.Bounds().Dy(), out.NRGBAAt(0, 0), out.NRGBAAt(3, 1))
	// Output: 4 2 {128 128 128 255} {128 128 128 255}
}
