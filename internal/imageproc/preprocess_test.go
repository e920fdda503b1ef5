package imageproc

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// naivePreprocess is the pipeline written the obvious way (full resize, then crop with zero padding,
// then the float formulas), to check Preprocess's cropped-region resize and lookup tables.
func naivePreprocess(t *testing.T, c Config, src *RGB) (out []float32, w, h int) {
	t.Helper()
	rw, rh, err := c.ResizeSize(src.Width, src.Height)
	if err != nil {
		t.Fatal(err)
	}
	full := src
	if rw != src.Width || rh != src.Height {
		if full, err = Resize(src, rw, rh, c.Resample); err != nil {
			t.Fatal(err)
		}
	}
	w, h = rw, rh
	top, left := 0, 0
	if c.DoCenterCrop {
		w, h = c.CropWidth, c.CropHeight
		top = int(math.Floor(float64(rh-h) / 2))
		left = int(math.Floor(float64(rw-w) / 2))
	}
	out = make([]float32, 3*w*h)
	for ch := 0; ch < 3; ch++ {
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				sy, sx := y+top, x+left
				v := uint8(0)
				if sy >= 0 && sy < rh && sx >= 0 && sx < rw {
					v = full.Pix[(sy*rw+sx)*3+ch]
				}
				f := float32(v)
				if c.DoRescale {
					f = float32(float64(v) * c.RescaleFactor)
				}
				if c.DoNormalize {
					f = (f - float32(c.ImageMean[ch])) / float32(c.ImageStd[ch])
				}
				out[(ch*h+y)*w+x] = f
			}
		}
	}
	return out, w, h
}

func TestPreprocessShapes(t *testing.T) {
	def := DefaultConfig()
	noResize := def
	noResize.DoResize = false
	noCrop := def
	noCrop.DoCenterCrop = false
	square := def
	square.Size = Size{Height: 100, Width: 150}
	capped := def
	capped.Size = Size{ShortestEdge: 224, LongestEdge: 300}
	raw := def
	raw.DoRescale, raw.DoNormalize = false, false
	oddCrop := def
	oddCrop.CropHeight, oddCrop.CropWidth = 101, 333
	bilinear := def
	bilinear.Resample = Bilinear
	cases := []struct {
		name string
		c    Config
		w, h int
	}{
		{"upscale 64x48", def, 64, 48},
		{"exact 224", def, 224, 224},
		{"one off 225x224", def, 225, 224},
		{"very wide 2000x30", def, 2000, 30},
		{"very tall 30x2000", def, 30, 2000},
		{"extreme 3x1000", def, 3, 1000},
		{"1x1", def, 1, 1},
		{"vertical first 300x700", def, 300, 700},
		{"no resize, smaller than crop (padding)", noResize, 100, 50},
		{"no resize, larger", noResize, 300, 260},
		{"no crop", noCrop, 120, 80},
		{"height/width size, crop larger (padding)", square, 77, 91},
		{"shortest+longest edge", capped, 640, 100},
		{"no rescale, no normalise", raw, 50, 70},
		{"odd crop", oddCrop, 333, 200},
		{"bilinear", bilinear, 500, 400},
	}
	r := rand.New(rand.NewPCG(9, 9))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := randomRGB(r, tc.w, tc.h, true)
			want, w, h := naivePreprocess(t, tc.c, src)
			ow, oh, err := tc.c.OutputSize(tc.w, tc.h)
			if err != nil || ow != w || oh != h {
				t.Fatalf("OutputSize = %d, %d, %v; want %d, %d", ow, oh, err, w, h)
			}
			got := make([]float32, 3*w*h)
			if err := tc.c.Preprocess(src, got); err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("value %d: %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestResizeSize(t *testing.T) {
	// Expected values from transformers 5.12.1 (get_resize_output_image_size,
	// get_size_with_aspect_ratio).
	short := DefaultConfig()
	for _, v := range [][4]int{{64, 48, 298, 224}, {2000, 30, 14933, 224}, {30, 2000, 224, 14933},
		{224, 224, 224, 224}, {451, 300, 336, 224}, {300, 700, 224, 522}, {1, 1, 224, 224}, {1000, 3, 74666, 224}} {
		w, h, err := short.ResizeSize(v[0], v[1])
		if err != nil || w != v[2] || h != v[3] {
			t.Errorf("shortest 224, %dx%d: %dx%d %v, want %dx%d", v[0], v[1], w, h, err, v[2], v[3])
		}
	}
	for _, v := range [][6]int{{2000, 30, 224, 448, 448, 7}, {30, 2000, 224, 448, 7, 448}, {640, 480, 256, 300, 300, 225},
		{480, 640, 256, 1000, 256, 341}, {451, 300, 224, 336, 336, 224}, {1000, 7, 5, 100, 100, 1}, {1001, 999, 224, 225, 224, 224}} {
		c := DefaultConfig()
		c.Size = Size{ShortestEdge: v[2], LongestEdge: v[3]}
		w, h, err := c.ResizeSize(v[0], v[1])
		if err != nil || w != v[4] || h != v[5] {
			t.Errorf("%+v, %dx%d: %dx%d %v, want %dx%d", c.Size, v[0], v[1], w, h, err, v[4], v[5])
		}
	}
	if _, _, err := short.ResizeSize(0, 5); !errors.Is(err, ErrEmptyImage) {
		t.Errorf("zero width: %v", err)
	}
}

func TestPreprocessErrors(t *testing.T) {
	c := DefaultConfig()
	src := randomRGB(rand.New(rand.NewPCG(1, 1)), 10, 10, true)
	if err := c.Preprocess(src, make([]float32, 10)); err == nil {
		t.Error("short dst accepted")
	}
	if err := c.Preprocess(&RGB{Width: 3, Height: 3, Pix: make([]uint8, 3)}, make([]float32, 3*224*224)); err == nil {
		t.Error("inconsistent image accepted")
	}
	if err := c.Preprocess(nil, make([]float32, 3*224*224)); !errors.Is(err, ErrEmptyImage) {
		t.Errorf("nil image: %v", err)
	}
	bad := c
	bad.ImageStd[1] = 0
	if err := bad.Preprocess(src, make([]float32, 3*224*224)); err == nil {
		t.Error("zero std accepted")
	}
	if _, err := bad.PreprocessBatch([]*RGB{src}); err == nil {
		t.Error("zero std accepted by PreprocessBatch")
	}
}

func TestPreprocessBatch(t *testing.T) {
	c := DefaultConfig()
	r := rand.New(rand.NewPCG(2, 2))
	var srcs []*RGB
	for _, sz := range [][2]int{{640, 480}, {224, 224}, {64, 48}, {300, 700}, {1000, 20}} {
		srcs = append(srcs, randomRGB(r, sz[0], sz[1], r.IntN(2) == 0))
	}
	for _, procs := range []int{1, 2, 8} {
		old := runtime.GOMAXPROCS(procs)
		batch, err := c.PreprocessBatch(srcs)
		runtime.GOMAXPROCS(old)
		if err != nil {
			t.Fatal(err)
		}
		per := 3 * 224 * 224
		if len(batch) != len(srcs)*per {
			t.Fatalf("batch has %d values", len(batch))
		}
		for i, s := range srcs {
			one := make([]float32, per)
			if err := c.Preprocess(s, one); err != nil {
				t.Fatal(err)
			}
			for j := range one {
				if math.Float32bits(one[j]) != math.Float32bits(batch[i*per+j]) {
					t.Fatalf("GOMAXPROCS %d: image %d value %d differs from Preprocess", procs, i, j)
				}
			}
		}
	}
	if out, err := c.PreprocessBatch(nil); err != nil || out != nil {
		t.Errorf("empty batch: %v %v", out, err)
	}
	noCrop := c
	noCrop.DoCenterCrop = false
	if _, err := noCrop.PreprocessBatch(srcs[:2]); err == nil {
		t.Error("batch of different output sizes accepted")
	}
	if _, err := c.PreprocessBatch([]*RGB{srcs[0], nil}); err == nil {
		t.Error("nil image in batch accepted")
	}
}

func BenchmarkPreprocess512(b *testing.B) {
	c := DefaultConfig()
	src := randomRGB(rand.New(rand.NewPCG(1, 1)), 512, 512, true)
	dst := make([]float32, 3*224*224)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Preprocess(src, dst); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPreprocessBatch8(b *testing.B) {
	c := DefaultConfig()
	r := rand.New(rand.NewPCG(1, 1))
	srcs := make([]*RGB, 8)
	for i := range srcs {
		srcs[i] = randomRGB(r, 512, 512, true)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.PreprocessBatch(srcs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGeometry: the one resize-and-crop geometry (Preprocess and CheckTensor's fast path use it),
// including crops larger than the image with odd differences (floor division: the extra zero goes
// to the left/top, as transformers pads).
func TestGeometry(t *testing.T) {
	noResize := DefaultConfig()
	noResize.DoResize = false
	noCrop := DefaultConfig()
	noCrop.DoCenterCrop = false
	for _, tc := range []struct {
		name   string
		cfg    Config
		w, h   int
		want   Geometry
		padded bool
	}{
		{"landscape, resized then cropped", DefaultConfig(), 64, 48,
			Geometry{ResizeW: 298, ResizeH: 224, OutW: 224, OutH: 224, Top: 0, Left: 37, X0: 37, Y0: 0, X1: 261, Y1: 224}, false},
		{"square", DefaultConfig(), 224, 224,
			Geometry{ResizeW: 224, ResizeH: 224, OutW: 224, OutH: 224, X1: 224, Y1: 224}, false},
		{"smaller than the crop, even", noResize, 100, 300,
			Geometry{ResizeW: 100, ResizeH: 300, OutW: 224, OutH: 224, Top: 38, Left: -62, X0: 0, Y0: 38, X1: 100, Y1: 262}, true},
		{"smaller than the crop, odd", noResize, 99, 224,
			Geometry{ResizeW: 99, ResizeH: 224, OutW: 224, OutH: 224, Top: 0, Left: -63, X0: 0, Y0: 0, X1: 99, Y1: 224}, true},
		{"no crop", noCrop, 64, 48,
			Geometry{ResizeW: 298, ResizeH: 224, OutW: 298, OutH: 224, X1: 298, Y1: 224}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := tc.cfg.Geometry(tc.w, tc.h)
			if err != nil {
				t.Fatal(err)
			}
			if g != tc.want || g.Padded() != tc.padded {
				t.Errorf("Geometry(%d, %d) = %+v (padded %v), want %+v (padded %v)", tc.w, tc.h, g, g.Padded(), tc.want, tc.padded)
			}
			if ow, oh, err := tc.cfg.OutputSize(tc.w, tc.h); err != nil || ow != g.OutW || oh != g.OutH {
				t.Errorf("OutputSize = %dx%d %v, Geometry's output %dx%d", ow, oh, err, g.OutW, g.OutH)
			}
		})
	}
	if _, err := DefaultConfig().Geometry(0, 5); !errors.Is(err, ErrEmptyImage) {
		t.Errorf("zero width: %v", err)
	}
}
