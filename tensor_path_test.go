package safety

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/gotchutil"
	"github.com/sdsafety/safety/internal/imageproc"
)

// tensorGolden is testdata/golden/tensor_path.json (see testdata/golden/README.md).
type tensorGolden struct {
	Model string `json:"model"`
	Input struct {
		File   string  `json:"file"`
		Shape  []int64 `json:"shape"`
		SHA256 string  `json:"sha256"`
	} `json:"input"`
	BlackedOut []int `json:"blacked_out"`
	Output     struct {
		File   string  `json:"file"`
		Shape  []int64 `json:"shape"`
		SHA256 string  `json:"sha256"`
	} `json:"output"`
	Images []struct {
		expectedImage
		UInt8Shape        []int  `json:"uint8_shape"`
		UInt8SHA256       string `json:"uint8_sha256"`
		BlackedOut        bool   `json:"blacked_out"`
		OutputUInt8SHA256 string `json:"output_uint8_sha256"`
	} `json:"images"`
}

func readTensorGolden(t *testing.T) (g tensorGolden, in, out []float32) {
	t.Helper()
	path := filepath.Join(goldenDir, "tensor_path.json")
	needTracked(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(g.Images) == 0 || len(g.Input.Shape) != 4 {
		t.Fatalf("%s: no images or no input shape", path)
	}
	in = readGoldenF32(t, filepath.Join(goldenDir, g.Input.File), g.Input.SHA256)
	out = readGoldenF32(t, filepath.Join(goldenDir, g.Output.File), g.Output.SHA256)
	return g, in, out
}

// readF32 reads a float32 little-endian dump and checks its sha256.
func readGoldenF32(t *testing.T, path, sha string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := hexSHA256(b); sha != "" && got != sha {
		t.Fatalf("%s: sha256 %s, want %s", path, got, sha)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func hexSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newTensor makes a float32 tensor on the checker's worker (converted to dtype when it is not
// Float); the test drops it at cleanup, before the checker closes.
func newTestTensor(t *testing.T, c *Checker, data []float32, dtype gotch.DType, shape ...int64) *ts.Tensor {
	t.Helper()
	var x *ts.Tensor
	err := c.rt.Run(func() error {
		var err error
		if x, err = gotchutil.FromFloat32(data, shape...); err != nil {
			return err
		}
		if dtype != gotch.Float {
			y, err := x.Totype(dtype, true)
			if err != nil {
				return gotchutil.TorchError("to_dtype", err)
			}
			x = y
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dropOnCleanup(t, c, x)
	return x
}

func dropOnCleanup(t *testing.T, c *Checker, x *ts.Tensor) {
	t.Cleanup(func() { _ = c.rt.Run(func() error { return x.Drop() }) })
}

// tensorValues copies a tensor's values (as float32), shape and dtype on the checker's worker.
func testTensorValues(t *testing.T, c *Checker, x *ts.Tensor) ([]float32, []int64, gotch.DType) {
	t.Helper()
	var (
		v  []float32
		sz []int64
		dt gotch.DType
	)
	err := c.rt.Run(func() error {
		var err error
		if sz, err = x.Size(); err != nil {
			return err
		}
		dt = x.DType()
		v, err = gotchutil.Float32s(x)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v, sz, dt
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// zeroedImages returns a copy of in ([B, ...] with per values per image) with the listed images zeroed.
func zeroedImages(in []float32, per int, idx []int) []float32 {
	out := slices.Clone(in)
	for _, i := range idx {
		clear(out[i*per : (i+1)*per])
	}
	return out
}

func nsfwIndices(rs []Result) []int {
	idx := []int{}
	for i, r := range rs {
		if r.NSFW {
			idx = append(idx, i)
		}
	}
	return idx
}

// TestCheckTensorGolden runs the pipeline's tensor path on the golden batch: the 8-bit images and
// the pixel values must be bit-identical to the reference's, the results equal within float32
// tolerances, and the returned tensor the reference's output (flagged images zeroed).
func TestCheckTensorGolden(t *testing.T) {
	g, in, goldenOut := readTensorGolden(t)
	c := mustLoad(t, filepath.Join(goldenDir, g.Model), WithDevice(DeviceCPU))
	per := len(in) / int(g.Input.Shape[0])
	// The same batch mapped to [0, 1] in float32, as postprocess(output_type="pt") would hold it.
	unit := make([]float32, len(in))
	for i, x := range in {
		h := float32(x * 0.5)
		unit[i] = float32(h + 0.5)
	}
	for _, tc := range []struct {
		name string
		data []float32
		opts *TensorOptions
		file bool // the output must also equal output.f32
	}{
		{"minus_one_to_one", in, nil, true},
		{"zero_to_one_option", unit, &TensorOptions{ZeroToOne: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newTestTensor(t, c, tc.data, gotch.Float, g.Input.Shape...)
			var o TensorOptions
			if tc.opts != nil {
				o = *tc.opts
			}
			// The 8-bit images and the pixel values, bit for bit.
			rgbs, err := c.tensorRGB(x, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(rgbs) != len(g.Images) {
				t.Fatalf("%d images, want %d", len(rgbs), len(g.Images))
			}
			pix, err := c.preprocessTensorRGB(rgbs)
			if err != nil {
				t.Fatal(err)
			}
			s := c.info.ImageSize
			for i, e := range g.Images {
				if got := hexSHA256(rgbs[i].Pix); got != e.UInt8SHA256 {
					t.Errorf("image %d: uint8 sha256 %s, want %s", i, got, e.UInt8SHA256)
				}
				if got := pixelSHA(pix[i*3*s*s : (i+1)*3*s*s]); got != e.PixelSHA256 {
					t.Errorf("image %d: pixel sha256 %s, want %s", i, got, e.PixelSHA256)
				}
				// What the pipeline finally returns: the black image for flagged ones.
				final := rgbs[i]
				if e.BlackedOut {
					rgb, err := imageproc.FromImage(CensorBlack(rgbs[i].ToImage()))
					if err != nil {
						t.Fatal(err)
					}
					final = rgb
				}
				if got := hexSHA256(final.Pix); got != e.OutputUInt8SHA256 {
					t.Errorf("image %d: final uint8 sha256 %s, want %s", i, got, e.OutputUInt8SHA256)
				}
			}

			res, err := c.CheckTensor(context.Background(), x, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.rt.Run(func() error { return res.Images.Drop() }) }()
			if len(res.Results) != len(g.Images) {
				t.Fatalf("%d results, want %d", len(res.Results), len(g.Images))
			}
			for i, e := range g.Images {
				r := res.Results[i]
				t.Logf("%s: nsfw=%v bad=%v; embeds rel err %.2e, pooled rel err %.2e, cos max diff %.2e, scores max diff %.4f",
					e.File, r.NSFW, r.BadConcepts, relErr(r.ImageEmbeds, e.ImageEmbeds), relErr(r.PooledOutput, e.PooledOutput),
					max(maxAbs(r.CosDist, e.CosDist), maxAbs(r.SpecialCosDist, e.SpecialCosDist)),
					max(maxAbs(r.ConceptScores, e.ConceptScores), maxAbs(r.SpecialScores, e.SpecialScores)))
				compareTensorResult(t, e.File, r, e.expectedImage, float32Tol)
			}
			if got := nsfwIndices(res.Results); !slices.Equal(got, g.BlackedOut) {
				t.Errorf("flagged images %v, want %v", got, g.BlackedOut)
			}

			out, sz, dt := testTensorValues(t, c, res.Images)
			if !slices.Equal(sz, g.Output.Shape) || dt != gotch.Float {
				t.Fatalf("Images is %v %v, want %v float32", sz, dt, g.Output.Shape)
			}
			want := zeroedImages(tc.data, per, g.BlackedOut)
			if !slices.Equal(f32Bytes(out), f32Bytes(want)) {
				t.Error("Images differs from the input with the flagged images zeroed")
			}
			if tc.file {
				if got := hexSHA256(f32Bytes(out)); got != g.Output.SHA256 ||
					!slices.Equal(f32Bytes(out), f32Bytes(goldenOut)) {
					t.Errorf("Images differs from %s (sha256 %s, want %s)", g.Output.File, got, g.Output.SHA256)
				}
			}
			if after, _, _ := testTensorValues(t, c, x); !slices.Equal(f32Bytes(after), f32Bytes(tc.data)) {
				t.Error("CheckTensor modified its input")
			}
		})
	}
}

// compareResult compares one result with the reference's within tol.
func compareTensorResult(t *testing.T, name string, r Result, e expectedImage, tol tolerance) {
	t.Helper()
	if tol.exact && (r.NSFW != e.NSFW || !slices.Equal(r.BadConcepts, e.BadConcepts) ||
		!slices.Equal(r.SpecialConcepts, e.SpecialCare)) {
		t.Errorf("%s: verdict nsfw=%v bad=%v special=%v, want nsfw=%v bad=%v special=%v",
			name, r.NSFW, r.BadConcepts, r.SpecialConcepts, e.NSFW, e.BadConcepts, e.SpecialCare)
	}
	if d := relErr(r.ImageEmbeds, e.ImageEmbeds); d > tol.embeds {
		t.Errorf("%s: image_embeds relative error %.2e > %.0e", name, d, tol.embeds)
	}
	if e.PooledOutput != nil {
		if d := relErr(r.PooledOutput, e.PooledOutput); d > tol.embeds {
			t.Errorf("%s: pooled_output relative error %.2e > %.0e", name, d, tol.embeds)
		}
	}
	if d := max(maxAbs(r.CosDist, e.CosDist), maxAbs(r.SpecialCosDist, e.SpecialCosDist)); d > tol.cos {
		t.Errorf("%s: cosine similarity error %.2e > %.0e", name, d, tol.cos)
	}
	if d := max(maxAbs(r.ConceptScores, e.ConceptScores), maxAbs(r.SpecialScores, e.SpecialScores)); d > tol.score {
		t.Errorf("%s: rounded scores differ by %.4f", name, d)
	}
}

// TestToUint8 checks numpy_to_pil's rounding: float32 product, then half to even.
func TestToUint8(t *testing.T) {
	for _, tc := range []struct {
		v    float32
		want uint8
	}{
		{0, 0}, {1, 255}, {0.5, 128}, // 127.5 → 128 (even)
		{float32(90.5 / 255), 90}, {float32(120.5 / 255), 120}, // ties when the product is exact
		{float32(0.49999997 / 255), 0}, {float32(1.5 / 255), 2},
	} {
		if got := toUint8(tc.v); got != tc.want {
			t.Errorf("toUint8(%v) (×255 = %v) = %d, want %d", tc.v, float32(tc.v*255), got, tc.want)
		}
	}
}

// TestCheckTensorInvalid checks every validation error, on both paths, and that no tensor leaks.
func TestCheckTensorInvalid(t *testing.T) {
	g, _, _ := readTensorGolden(t)
	c := mustLoad(t, filepath.Join(goldenDir, g.Model), WithDevice(DeviceCPU))
	filled := func(n int, v float32) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = 0.25
		}
		if n > 0 {
			d[n/2] = v
		}
		return d
	}
	raw := func(dtype gotch.DType, shape ...int64) func(t *testing.T) *ts.Tensor {
		return func(t *testing.T) *ts.Tensor {
			n := int64(1)
			for _, d := range shape {
				n *= d
			}
			var x *ts.Tensor
			err := c.rt.Run(func() error {
				var err error
				x, err = gotchutil.FromBytes(make([]byte, n*int64(dtype.Size())), dtype, shape...)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			dropOnCleanup(t, c, x)
			return x
		}
	}
	floats := func(v float32, shape ...int64) func(t *testing.T) *ts.Tensor {
		return func(t *testing.T) *ts.Tensor {
			n := int64(1)
			for _, d := range shape {
				n *= d
			}
			return newTestTensor(t, c, filled(int(n), v), gotch.Float, shape...)
		}
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T) *ts.Tensor
	}{
		{"nil", func(*testing.T) *ts.Tensor { return nil }},
		{"rank3", floats(0, 3, 64, 96)},
		{"rank5", floats(0, 1, 1, 3, 64, 96)},
		{"rank0", func(t *testing.T) *ts.Tensor {
			x := newTestTensor(t, c, []float32{0.5}, gotch.Float, 1)
			var y *ts.Tensor
			if err := c.rt.Run(func() error {
				var err error
				y, err = x.Squeeze(false)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			dropOnCleanup(t, c, y)
			return y
		}},
		{"channels4", floats(0, 1, 4, 64, 96)},
		{"channels1", floats(0, 1, 1, 64, 96)},
		{"int64", raw(gotch.Int64, 1, 3, 64, 96)},
		{"uint8", raw(gotch.Uint8, 1, 3, 64, 96)},
		{"bool", raw(gotch.Bool, 1, 3, 64, 96)},
		{"nan", floats(float32(math.NaN()), 2, 3, 64, 96)},
		{"inf", floats(float32(math.Inf(1)), 2, 3, 64, 96)},
		{"minus_inf", floats(float32(math.Inf(-1)), 2, 3, 64, 96)},
		{"height0", raw(gotch.Float, 1, 3, 0, 96)},
		{"width0", raw(gotch.Float, 1, 3, 64, 0)},
	} {
		for _, fast := range []bool{false, true} {
			name := tc.name + map[bool]string{false: "/exact", true: "/fast"}[fast]
			t.Run(name, func(t *testing.T) {
				x := tc.make(t)
				settleFinalizers()
				before := gotchutil.LiveTensors()
				res, err := c.CheckTensor(context.Background(), x, &TensorOptions{Fast: fast})
				if !errors.Is(err, ErrInvalidInput) {
					t.Fatalf("err = %v, want ErrInvalidInput", err)
				}
				if res != nil {
					t.Error("a result came with the error")
				}
				t.Logf("%v", err)
				if got := gotchutil.LiveTensors(); got != before {
					t.Errorf("live tensors %d after a refused check, want %d", got, before)
				}
			})
		}
	}
}

// settleFinalizers lets gotch's finalisers of unreachable tensors (left by earlier tests) run, so
// that they do not change the live count in the middle of a measurement.
func settleFinalizers() {
	for range 2 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCheckTensorNoLeak checks that CheckTensor drops every intermediate: only the returned Images
// tensor stays alive.
func TestCheckTensorNoLeak(t *testing.T) {
	g, in, _ := readTensorGolden(t)
	c := mustLoad(t, filepath.Join(goldenDir, g.Model), WithDevice(DeviceCPU), WithBatchSize(1))
	x := newTestTensor(t, c, in, gotch.Float, g.Input.Shape...)
	for _, tc := range []struct {
		name string
		opts *TensorOptions
	}{
		{"exact", nil},
		{"exact_zero_to_one", &TensorOptions{ZeroToOne: true}},
		{"fast", &TensorOptions{Fast: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warm, err := c.CheckTensor(context.Background(), x, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.rt.Run(func() error { return warm.Images.Drop() }); err != nil {
				t.Fatal(err)
			}
			settleFinalizers()
			before := gotchutil.LiveTensors()
			for range 3 {
				res, err := c.CheckTensor(context.Background(), x, tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				if got := gotchutil.LiveTensors(); got != before+1 {
					t.Errorf("live tensors %d after CheckTensor, want %d (+1: Images)", got, before+1)
				}
				if err := c.rt.Run(func() error { return res.Images.Drop() }); err != nil {
					t.Fatal(err)
				}
				if got := gotchutil.LiveTensors(); got != before {
					t.Errorf("live tensors %d after dropping Images, want %d", got, before)
				}
			}
		})
	}
}

// smoothBatch is a deterministic smooth [b, 3, h, w] batch in about [−1.1, 1.1], like decoded images.
func smoothBatch(b, h, w int) []float32 {
	v := make([]float32, b*3*h*w)
	i := 0
	for n := range b {
		for ch := range 3 {
			for y := range h {
				for x := range w {
					fy, fx := float64(y)/float64(h), float64(x)/float64(w)
					s := math.Sin(7*fx+3*fy+float64(n+ch)) + 0.5*math.Cos(19*fy-11*fx*fy+float64(ch))
					if (x/37+y/23)%3 == 0 { // hard edges
						s = -s
					}
					v[i] = float32(0.73 * s)
					i++
				}
			}
		}
	}
	return v
}

// fastPixelDiff compares the fast path's pixel values for x ([B, 3, H, W] float32 in [−1, 1]) with
// the exact path's: the largest and mean difference in 8-bit levels, and how many values differ by
// more than half a level (of n).
func fastPixelDiff(t *testing.T, c *Checker, x *ts.Tensor, shape []int64) (maxLevels, meanLevels float64, differ, n int) {
	t.Helper()
	s := c.info.ImageSize
	rgbs, err := c.tensorRGB(x, TensorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exact, err := c.preprocessTensorRGB(rgbs)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := c.planFast(int(shape[3]), int(shape[2]))
	if err != nil {
		t.Fatal(err)
	}
	var fast []float32
	err = c.rt.Run(func() error {
		var tp gotchutil.Tape
		defer tp.Release()
		p := c.fastPixels(&tp, x, TensorOptions{}, plan, gotch.CPU)
		if err := tp.Err(); err != nil {
			return err
		}
		fast, err = gotchutil.Float32s(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(fast) != len(exact) {
		t.Fatalf("fast pixels: %d values, want %d", len(fast), len(exact))
	}
	var sum float64
	for i := range exact {
		ch := (i / (s * s)) % 3
		d := math.Abs(float64(fast[i]-exact[i])) * c.proc.ImageStd[ch] * 255
		maxLevels = max(maxLevels, d)
		sum += d
		if d > 0.5 {
			differ++
		}
	}
	return maxLevels, sum / float64(len(exact)), differ, len(exact)
}

// TestCheckTensorFast compares the fast path with the exact one: pixel values (reported in 8-bit
// levels), verdicts and embeddings, on the golden batch (upscaled) and on SD-sized batches
// (downscaled).
func TestCheckTensorFast(t *testing.T) {
	g, in, _ := readTensorGolden(t)
	c := mustLoad(t, filepath.Join(goldenDir, g.Model), WithDevice(DeviceCPU))
	for _, tc := range []struct {
		name      string
		data      []float32
		shape     []int64
		maxLevels float64 // largest pixel difference allowed, in 8-bit levels
		golden    bool
	}{
		{"golden_64x96", in, g.Input.Shape, 2, true},
		{"sd_512x512", smoothBatch(2, 512, 512), []int64{2, 3, 512, 512}, 2, false},
		{"portrait_320x200", smoothBatch(1, 320, 200), []int64{1, 3, 320, 200}, 2, false},
		{"crop_only_224x300", smoothBatch(1, 224, 300), []int64{1, 3, 224, 300}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newTestTensor(t, c, tc.data, gotch.Float, tc.shape...)
			maxLevels, meanLevels, differ, n := fastPixelDiff(t, c, x, tc.shape)
			t.Logf("resize op: _upsample_bicubic2d_aa available = %v", gotchutil.HasOp("_upsample_bicubic2d_aa"))
			t.Logf("fast vs exact pixels: max %.3f levels (%.4f normalised), mean %.4f levels, %d of %d values differ",
				maxLevels, maxLevels/255/0.26130258, meanLevels, differ, n)
			if maxLevels > tc.maxLevels+0.01 {
				t.Errorf("fast pixels differ by up to %.3f levels, want ≤ %v", maxLevels, tc.maxLevels)
			}

			ex, err := c.CheckTensor(context.Background(), x, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.rt.Run(func() error { return ex.Images.Drop() }) }()
			fr, err := c.CheckTensor(context.Background(), x, &TensorOptions{Fast: true})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.rt.Run(func() error { return fr.Images.Drop() }) }()
			for i := range ex.Results {
				a, b := ex.Results[i], fr.Results[i]
				t.Logf("image %d: nsfw exact=%v fast=%v, embeds rel err %.2e, scores max diff %.4f", i, a.NSFW, b.NSFW,
					relErr(b.ImageEmbeds, f64(a.ImageEmbeds)), max(maxAbs(b.ConceptScores, f64(a.ConceptScores)),
						maxAbs(b.SpecialScores, f64(a.SpecialScores))))
				if d := relErr(b.ImageEmbeds, f64(a.ImageEmbeds)); d > 0.02 {
					t.Errorf("image %d: fast embeds relative error %.2e > 0.02", i, d)
				}
				if tc.golden {
					compareTensorResult(t, g.Images[i].File, b, g.Images[i].expectedImage,
						tolerance{embeds: 0.02, cos: 0.01, score: 0.011, exact: true})
				}
			}
			exOut, _, _ := testTensorValues(t, c, ex.Images)
			frOut, _, _ := testTensorValues(t, c, fr.Images)
			if slices.Equal(nsfwIndices(ex.Results), nsfwIndices(fr.Results)) &&
				!slices.Equal(f32Bytes(exOut), f32Bytes(frOut)) {
				t.Error("same verdicts, different Images tensors")
			}
		})
	}
}

// readHalfUint8SHA256 reads testdata/golden/tensor_path_half.json (reference/make_test_vectors.py):
// the sha256s of the 8-bit images that diffusers makes of the golden input cast to float16 and
// bfloat16 (postprocess computes (x·0.5 + 0.5).clamp(0, 1) in the tensor's dtype, so they differ from
// the float32 ones).
func readHalfUint8SHA256(t *testing.T, images int) map[gotch.DType][]string {
	t.Helper()
	path := filepath.Join(goldenDir, "tensor_path_half.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SHA256 map[string][]string `json:"uint8_sha256"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[gotch.DType][]string{gotch.Half: doc.SHA256["float16"], gotch.BFloat16: doc.SHA256["bfloat16"]}
	for dt, shas := range out {
		if len(shas) != images {
			t.Fatalf("%s: %d %v images, want %d", path, len(shas), dt, images)
		}
	}
	return out
}

// TestCheckTensorDTypes runs float16, bfloat16 and float64 batches through both paths: the 8-bit
// images are diffusers' for that dtype, Images keeps the dtype, verdicts match the float32 reference.
func TestCheckTensorDTypes(t *testing.T) {
	g, in, _ := readTensorGolden(t)
	halfUint8SHA256 := readHalfUint8SHA256(t, len(g.Images))
	c := mustLoad(t, filepath.Join(goldenDir, g.Model), WithDevice(DeviceCPU))
	for _, dt := range []gotch.DType{gotch.Half, gotch.BFloat16, gotch.Double} {
		for _, fast := range []bool{false, true} {
			t.Run(dt.String()+map[bool]string{false: "/exact", true: "/fast"}[fast], func(t *testing.T) {
				x := newTestTensor(t, c, in, dt, g.Input.Shape...)
				checkGoldenTensor(t, c, g, x, dt, fast, halfUint8SHA256, 0)
			})
		}
	}
}

// checkGoldenTensor runs the golden tensor-path batch x (of dtype dt, on any device) through
// CheckTensor: on the exact path the 8-bit images are diffusers' for dt (halfSHA for float16 and
// bfloat16; float64 arithmetic gives the float32 images); the verdicts are the reference's and, when
// embedsBound > 0, the embeddings within that relative error; Images has dt and the input's shape and
// equals the input with the flagged images zeroed. It returns Images (dropped when the test ends).
func checkGoldenTensor(t *testing.T, c *Checker, g tensorGolden, x *ts.Tensor, dt gotch.DType, fast bool,
	halfSHA map[gotch.DType][]string, embedsBound float64) *ts.Tensor {
	t.Helper()
	xv, _, _ := testTensorValues(t, c, x)
	if !fast {
		rgbs, err := c.tensorRGB(x, TensorOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i, rgb := range rgbs {
			want := g.Images[i].UInt8SHA256
			if w, ok := halfSHA[dt]; ok {
				want = w[i]
			}
			if got := hexSHA256(rgb.Pix); got != want {
				t.Errorf("image %d: uint8 sha256 %s, want diffusers' %s", i, got, want)
			}
		}
	}
	res, err := c.CheckTensor(context.Background(), x, &TensorOptions{Fast: fast})
	if err != nil {
		t.Fatal(err)
	}
	dropOnCleanup(t, c, res.Images)
	for i, e := range g.Images {
		r := res.Results[i]
		d := relErr(r.ImageEmbeds, e.ImageEmbeds)
		t.Logf("image %d: nsfw=%v, embeds rel err %.2e", i, r.NSFW, d)
		if r.NSFW != e.NSFW || !slices.Equal(r.BadConcepts, e.BadConcepts) {
			t.Errorf("image %d: nsfw=%v bad=%v, want nsfw=%v bad=%v", i, r.NSFW, r.BadConcepts, e.NSFW, e.BadConcepts)
		}
		if embedsBound > 0 && d > embedsBound {
			t.Errorf("image %d: image_embeds relative error %.2e > %.0e", i, d, embedsBound)
		}
	}
	out, sz, odt := testTensorValues(t, c, res.Images)
	if odt != dt || !slices.Equal(sz, g.Input.Shape) {
		t.Errorf("Images is %v %v, want %v %v", sz, odt, g.Input.Shape, dt)
	}
	per := len(xv) / int(g.Input.Shape[0])
	if !slices.Equal(f32Bytes(out), f32Bytes(zeroedImages(xv, per, nsfwIndices(res.Results)))) {
		t.Error("Images differs from the input with the flagged images zeroed")
	}
	return res.Images
}

// TestCheckTensorEdgeCases: an empty batch, a closed checker.
func TestCheckTensorEdgeCases(t *testing.T) {
	g, _, _ := readTensorGolden(t)
	dir := filepath.Join(goldenDir, g.Model)
	c := mustLoad(t, dir, WithDevice(DeviceCPU))
	x := newTestTensor(t, c, nil, gotch.Float, 0, 3, 64, 96)
	for _, fast := range []bool{false, true} {
		res, err := c.CheckTensor(context.Background(), x, &TensorOptions{Fast: fast})
		if err != nil {
			t.Fatalf("empty batch (fast=%v): %v", fast, err)
		}
		_, sz, _ := testTensorValues(t, c, res.Images)
		if len(res.Results) != 0 || !slices.Equal(sz, []int64{0, 3, 64, 96}) {
			t.Errorf("empty batch (fast=%v): %d results, Images %v", fast, len(res.Results), sz)
		}
		_ = c.rt.Run(func() error { return res.Images.Drop() })
	}

	closed := mustLoad(t, dir, WithDevice(DeviceCPU))
	y := newTestTensor(t, c, make([]float32, 3*64*96), gotch.Float, 1, 3, 64, 96)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	for _, fast := range []bool{false, true} {
		if _, err := closed.CheckTensor(context.Background(), y, &TensorOptions{Fast: fast}); !errors.Is(err, ErrClosed) {
			t.Errorf("after Close (fast=%v): %v, want ErrClosed", fast, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, fast := range []bool{false, true} {
		if _, err := c.CheckTensor(ctx, y, &TensorOptions{Fast: fast}); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled (fast=%v): %v, want context.Canceled", fast, err)
		}
	}
}

// TestCheckTensorFastVariants runs the fast path with other processor settings against the exact
// path: a bilinear filter, a resize smaller than the crop (zero padding), the non-antialiased
// fallback, and an unsupported filter.
func TestCheckTensorFastVariants(t *testing.T) {
	g, in, _ := readTensorGolden(t)
	dir := filepath.Join(goldenDir, g.Model)
	sd := smoothBatch(1, 512, 512)
	for _, tc := range []struct {
		name      string
		setup     func(c *Checker) (restore func())
		maxLevels float64 // largest pixel difference allowed, in 8-bit levels; < 0: ErrUnsupported
		// meanLevels bounds the mean difference. Measured (2-core x86-64 dev box, libtorch 2.1 CPU): bilinear
		// max 2, mean 0.072; padded_crop max 1, mean 0.0016; the fallback without antialiasing max 13 (64x96
		// upscaled) and 110 (512x512 downscaled: aliasing of its fine detail), mean 0.37 and 3.5. A wrong
		// channel order, an inverted or shifted image gives means of tens of levels.
		meanLevels float64
	}{
		{"bilinear", func(c *Checker) func() { c.proc.Resample = imageproc.Bilinear; return func() {} }, 2, 0.25},
		{"padded_crop", func(c *Checker) func() {
			c.proc.Size = imageproc.Size{Height: 200, Width: 250} // 250x200, centre crop 224x224: pad top and bottom
			return func() {}
		}, 2, 0.05},
		{"no_antialias_fallback", func(c *Checker) func() {
			old := hasOp
			hasOp = func(string) bool { return false }
			return func() { hasOp = old }
		}, 128, 5},
		{"lanczos_unsupported", func(c *Checker) func() { c.proc.Resample = imageproc.Lanczos; return func() {} }, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, dir, WithDevice(DeviceCPU))
			defer tc.setup(c)()
			for _, in := range []struct {
				name  string
				data  []float32
				shape []int64
			}{
				{"golden_64x96", in, g.Input.Shape},
				{"sd_512x512", sd, []int64{1, 3, 512, 512}},
			} {
				x := newTestTensor(t, c, in.data, gotch.Float, in.shape...)
				if tc.maxLevels < 0 {
					if _, err := c.CheckTensor(context.Background(), x, &TensorOptions{Fast: true}); !errors.Is(err, ErrUnsupported) {
						t.Errorf("%s: %v, want ErrUnsupported", in.name, err)
					}
					continue
				}
				maxLevels, meanLevels, differ, n := fastPixelDiff(t, c, x, in.shape)
				t.Logf("%s: fast vs exact pixels: max %.3f levels, mean %.4f levels, %d of %d values differ",
					in.name, maxLevels, meanLevels, differ, n)
				if maxLevels > tc.maxLevels+0.01 || meanLevels > tc.meanLevels {
					t.Errorf("%s: fast pixels differ by up to %.3f levels (mean %.4f), want ≤ %v (mean ≤ %v)", in.name,
						maxLevels, meanLevels, tc.maxLevels, tc.meanLevels)
				}
				res, err := c.CheckTensor(context.Background(), x, &TensorOptions{Fast: true})
				if err != nil {
					t.Fatal(err)
				}
				_ = c.rt.Run(func() error { return res.Images.Drop() })
				if len(res.Results) != int(in.shape[0]) {
					t.Errorf("%s: %d results", in.name, len(res.Results))
				}
			}
		})
	}
}
