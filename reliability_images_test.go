package safety

// Reliability tests, images: hostile or broken encoded images (the shared header builders
// pngWithHeader, jpegWithHeader, animatedGIF), degenerate images, image.Image values.
// docs/reliability.md lists every case with what happens.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/sdsafety/safety/internal/testbuild"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// ---- test inputs ---------------------------------------------------------------------------------

// readFirst returns the contents of the first of paths that exists. Every list ends with a file the
// repository tracks, so finding none fails the test.
func readFirst(t *testing.T, what string, paths ...string) []byte {
	t.Helper()
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			return b
		}
	}
	t.Fatalf("no %s test file (looked for %s; the repository tracks them)", what, strings.Join(paths, ", "))
	return nil
}

func encodePNGBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func solidImage(w, h int, c color.Color) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, c)
		}
	}
	return img
}

// animatedGIF returns a two-frame GIF: a red first frame, then a blue one.
func animatedGIF(t testing.TB, w, h int) []byte {
	t.Helper()
	frame := func(c color.Color) *image.Paletted {
		p := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
		idx := uint8(p.Palette.Index(c))
		for i := range p.Pix {
			p.Pix[i] = idx
		}
		return p
	}
	var buf bytes.Buffer
	err := gif.EncodeAll(&buf, &gif.GIF{
		Image: []*image.Paletted{frame(color.RGBA{255, 0, 0, 255}), frame(color.RGBA{0, 0, 255, 255})},
		Delay: []int{10, 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Test image sources: tracked golden files.
var (
	pngSources  = []string{testImage("sd_512x512.png"), "internal/imageproc/testdata/golden/palette_transparency.gif.pillow.png"}
	jpegSources = []string{testImage("photo_320x240.jpg"), "internal/imageproc/testdata/golden/baseline_420.jpg"}
	webpSources = []string{"internal/imageproc/testdata/golden/lossy.webp"}                                                       // VP8
	vp8lSources = []string{"testdata/golden/images/image_180x180.webp", "internal/imageproc/testdata/golden/lossless_alpha.webp"} // VP8L
	cmykSources = []string{"testdata/golden/images/cmyk_200x160.jpg", "internal/imageproc/testdata/golden/cmyk.jpg"}
)

// badImage is an encoded input that must be refused.
type badImage struct {
	name string
	file string // file name to write it under (the extension may lie)
	data []byte
	want error // the error it must wrap; nil: any error
}

// badImages returns the encoded inputs every entry point must refuse.
func badImages(t *testing.T) []badImage {
	t.Helper()
	pngData := readFirst(t, "PNG", pngSources...)
	jpegData := readFirst(t, "JPEG", jpegSources...)
	webpData := readFirst(t, "WebP", webpSources...)
	vp8lData := readFirst(t, "lossless WebP", vp8lSources...)
	return []badImage{
		{"zero bytes", "empty.png", nil, ErrEmptyImage},
		{"text named .png", "notes.png", []byte("this is a text file, not an image\n"), ErrUnsupportedFormat},
		{"truncated PNG header", "trunc_hdr.png", pngData[:30], nil},
		{"truncated PNG half", "trunc_half.png", pngData[:len(pngData)/2], nil},
		{"PNG without its last 20 bytes", "trunc_end.png", pngData[:len(pngData)-20], nil},
		{"truncated JPEG header", "trunc_hdr.jpg", jpegData[:120], nil},
		{"truncated JPEG half", "trunc_half.jpg", jpegData[:len(jpegData)/2], nil},
		{"JPEG without EOI", "trunc_end.jpg", jpegData[:len(jpegData)-2], nil},
		{"truncated WebP header", "trunc_hdr.webp", webpData[:24], nil},
		{"truncated WebP half", "trunc_half.webp", webpData[:len(webpData)/2], nil},
		{"truncated lossless WebP", "trunc_vp8l.webp", vp8lData[:len(vp8lData)*2/3], nil},
		{"PNG declaring 100000x100000", "huge.png", testbuild.PNGWithHeader(100000, 100000), ErrImageTooLarge},
		{"JPEG declaring 65000x65000", "huge.jpg", testbuild.JPEGWithHeader(65000, 65000), ErrImageTooLarge},
		{"PNG declaring 0x0", "zero.png", testbuild.PNGWithHeader(0, 0), nil},
		{"PNG declaring 0x10", "zero_w.png", testbuild.PNGWithHeader(0, 10), nil},
	}
}

// ---- bad images through the library ---------------------------------------------------------------

// TestBadImagesRefused feeds broken, hostile and degenerate encoded images to PreprocessEncoded and
// PreprocessFile: each is an error (of the documented kind where there is one), never a panic.
func TestBadImagesRefused(t *testing.T) {
	c := mustLoad(t, testModelDir, WithDevice(DeviceCPU))
	dir := t.TempDir()
	for _, bad := range badImages(t) {
		t.Run(bad.name, func(t *testing.T) {
			check := func(via string, pix []float32, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error, got %d pixel values", via, len(pix))
				}
				if bad.want != nil && !errors.Is(err, bad.want) {
					t.Fatalf("%s: error %q does not wrap %q", via, err, bad.want)
				}
			}
			pix, err := c.PreprocessEncoded(bad.data)
			check("PreprocessEncoded", pix, err)
			t.Log(err)
			path := filepath.Join(dir, bad.file)
			if err := os.WriteFile(path, bad.data, 0o644); err != nil {
				t.Fatal(err)
			}
			pix, err = c.PreprocessFile(path)
			check("PreprocessFile", pix, err)
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Errorf("PreprocessFile error %q does not name the file", err)
			}
		})
	}
	if _, err := c.PreprocessFile(filepath.Join(dir, "missing.png")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
	// The checker is unaffected.
	pix, err := c.PreprocessFile(testImage("gray_64x64.png"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckPixels(context.Background(), pix, 1); err != nil {
		t.Fatalf("check after bad inputs: %v", err)
	}
}

// TestHugeHeaderRefusedBeforeAllocation checks that an image declaring 10^10 pixels is refused
// from its header: a few allocations, a few KiB, not the 30 GB it declares.
func TestHugeHeaderRefusedBeforeAllocation(t *testing.T) {
	c := mustLoad(t, testModelDir, WithDevice(DeviceCPU))
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"png", testbuild.PNGWithHeader(100000, 100000)},
		{"jpeg", testbuild.JPEGWithHeader(65000, 65000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.PreprocessEncoded(tc.data); !errors.Is(err, ErrImageTooLarge) {
				t.Fatalf("error %v, want ErrImageTooLarge", err)
			}
			allocs := testing.AllocsPerRun(20, func() { _, _ = c.PreprocessEncoded(tc.data) })
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			const runs = 20
			for range runs {
				_, _ = c.PreprocessEncoded(tc.data)
			}
			runtime.ReadMemStats(&after)
			perCall := (after.TotalAlloc - before.TotalAlloc) / runs
			t.Logf("%.0f allocations, %d bytes per refused call", allocs, perCall)
			if allocs > 200 || perCall > 256<<10 {
				t.Errorf("refusing the header cost %.0f allocations and %d bytes per call (want ≤ 200 and ≤ 256 KiB)", allocs, perCall)
			}
		})
	}
}

// TestDegenerateImagesChecked covers valid but unusual images: a 1×1 image is upscaled and checked,
// an animated GIF is checked on its first frame, a CMYK JPEG is converted and checked.
func TestDegenerateImagesChecked(t *testing.T) {
	c := mustLoad(t, testModelDir, WithDevice(DeviceCPU))
	ctx := context.Background()
	s := c.Info().ImageSize
	red := color.NRGBA{255, 0, 0, 255}
	redPix, err := c.PreprocessEncoded(encodePNGBytes(t, solidImage(40, 30, red)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want []float32 // expected pixel values, nil: not compared
	}{
		{"1x1 PNG", encodePNGBytes(t, solidImage(1, 1, red)), redPix},
		{"1x1 GIF", func() []byte {
			var b bytes.Buffer
			if err := gif.Encode(&b, solidImage(1, 1, red), nil); err != nil {
				t.Fatal(err)
			}
			return b.Bytes()
		}(), redPix},
		{"animated GIF", animatedGIF(t, 40, 30), redPix},
		{"golden animated GIF", readFirst(t, "animated GIF", "testdata/golden/images/anim_160x200.gif"), nil},
		{"CMYK JPEG", readFirst(t, "CMYK JPEG", cmykSources...), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pix, err := c.PreprocessEncoded(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if len(pix) != 3*s*s {
				t.Fatalf("%d pixel values, want %d", len(pix), 3*s*s)
			}
			if tc.want != nil && !reflect.DeepEqual(pix, tc.want) {
				t.Errorf("pixel values differ from those of a solid red image (first frame not used?)")
			}
			res, err := c.CheckPixels(ctx, pix, 1)
			if err != nil {
				t.Fatal(err)
			}
			requireFinite(t, res[0])
		})
	}
}

// requireFinite fails unless every score of r is finite and the vectors have the model's widths.
func requireFinite(t *testing.T, r Result) {
	t.Helper()
	for name, v := range map[string][]float32{"concept_scores": r.ConceptScores, "special_scores": r.SpecialScores,
		"cos_dist": r.CosDist, "special_cos_dist": r.SpecialCosDist, "image_embeds": r.ImageEmbeds} {
		if len(v) == 0 {
			t.Errorf("%s is empty", name)
		}
		for i, x := range v {
			if !finite32(x) {
				t.Errorf("%s[%d] = %v", name, i, x)
			}
		}
	}
}

// TestCheckImageValues checks Check on image.Image values: nil and empty images are refused with
// an error naming their index and no results; 1×1, CMYK and offset-bounds images are checked.
func TestCheckImageValues(t *testing.T) {
	c := mustLoad(t, testModelDir, WithDevice(DeviceCPU))
	ctx := context.Background()
	good := solidImage(32, 32, color.NRGBA{10, 200, 30, 255})
	cmyk := image.NewCMYK(image.Rect(0, 0, 20, 10))
	for i := range cmyk.Pix {
		cmyk.Pix[i] = uint8(i * 7)
	}
	for _, tc := range []struct {
		name   string
		images []image.Image
		want   string // "" : success
	}{
		{"nil image", []image.Image{good, nil}, "image 1"},
		{"nil *NRGBA", []image.Image{(*image.NRGBA)(nil)}, "image 0"},
		{"0x0 image", []image.Image{image.NewRGBA(image.Rect(0, 0, 0, 0))}, "image 0"},
		{"0x5 image", []image.Image{good, good, image.NewGray(image.Rect(0, 0, 0, 5))}, "image 2"},
		{"image whose At panics", []image.Image{good, panicImage{image.Rect(0, 0, 4, 4)}}, "image 1"},
		{"1x1 image", []image.Image{solidImage(1, 1, color.White)}, ""},
		{"CMYK image", []image.Image{cmyk}, ""},
		{"bounds not at the origin", []image.Image{good.SubImage(image.Rect(5, 7, 30, 29))}, ""},
		{"no images", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := checkNoPanic(ctx, c, tc.images)
			if tc.want != "" {
				if err == nil || !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want ErrInvalidInput naming %q", err, tc.want)
				}
				if res != nil {
					t.Errorf("%d results alongside the error", len(res))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != len(tc.images) {
				t.Fatalf("%d results for %d images", len(res), len(tc.images))
			}
			for _, r := range res {
				requireFinite(t, r)
			}
		})
	}
}

// panicImage is an image.Image whose pixels cannot be read.
type panicImage struct{ r image.Rectangle }

func (p panicImage) ColorModel() color.Model { return color.NRGBAModel }
func (p panicImage) Bounds() image.Rectangle { return p.r }
func (p panicImage) At(x, y int) color.Color { panic("pixel unavailable") }

// checkNoPanic is Check with a panic turned into an error, so that one case cannot end the run.
func checkNoPanic(ctx context.Context, c *Checker, images []image.Image) (res []Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Check panicked: %v", r)
		}
	}()
	return c.Check(ctx, images)
}
