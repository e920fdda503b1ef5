package safety

// Reliability tests, model output: non-finite outputs are errors, never verdicts; huge pixels.
// docs/reliability.md lists every case with what happens.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/sdsafety/safety/internal/testbuild"
)

// ---- non-finite model output ---------------------------------------------------------------------

// TestNonFiniteOutputIsAnError makes the model produce NaN or Inf at inference: weights that overflow
// float32 or float16 arithmetic, and NaN or Inf pixels. Each is an error wrapping ErrNonFinite,
// never a Result (so never a "safe" verdict).
func TestNonFiniteOutputIsAnError(t *testing.T) {
	s := 224
	img := make([]float32, 3*s*s)
	for i := range img {
		img[i] = float32(i%97)/50 - 1
	}
	overflowing := func(scale float32) func(t *testing.T, m *tinyModel) {
		return func(t *testing.T, m *tinyModel) {
			for _, name := range []string{"encoder.layers.0.mlp.fc1.weight", "encoder.layers.0.mlp.fc2.weight"} {
				x := m.find(t, name)
				v := make([]float32, len(x.Data)/4)
				for i := range v {
					v[i] = scale * float32(1+i%3)
				}
				x.Data = testbuild.Float32LE(v)
			}
		}
	}
	withPixels := func(v float32) []float32 {
		p := append([]float32(nil), img...)
		for i := 100; i < 400; i++ {
			p[i] = v
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		model  func(t *testing.T, m *tinyModel)
		opts   []Option
		pixels []float32
	}{
		{"weights overflow float32", overflowing(1e25), nil, img},
		{"weights overflow float16", overflowing(200), []Option{WithDType(Float16)}, img},
		{"NaN pixels", nil, nil, withPixels(float32(math.NaN()))},
		{"+Inf pixels", nil, nil, withPixels(float32(math.Inf(1)))},
		{"-Inf pixels", nil, nil, withPixels(float32(math.Inf(-1)))},
		{"float32 max pixels", nil, nil, withPixels(math.MaxFloat32)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTinyModel(t)
			if tc.model != nil {
				tc.model(t, m)
			}
			c, err := Load(m.write(t), append([]Option{WithDevice(DeviceCPU)}, tc.opts...)...)
			if errors.Is(err, ErrUnsupported) {
				t.Skipf("this libtorch cannot run the requested dtype on the CPU: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			// The image twice: alone and next to a clean image in one batch.
			for _, batch := range [][]float32{tc.pixels, append(append([]float32(nil), img...), tc.pixels...)} {
				n := len(batch) / (3 * s * s)
				res, err := c.CheckPixels(context.Background(), batch, n)
				if errors.Is(err, ErrTorch) && c.Info().DType == Float16 && c.Info().Device == DeviceCPU {
					t.Skipf("this libtorch cannot run float16 on the CPU: %v", err)
				}
				if !errors.Is(err, ErrNonFinite) {
					t.Fatalf("batch of %d: results %v, error %v; want ErrNonFinite", n, summarizeResults(res), err)
				}
				if res != nil {
					t.Fatalf("batch of %d: %d results alongside the error", n, len(res))
				}
			}
			// The checker still works on clean input, unless its weights are what overflows.
			if tc.model == nil {
				res, err := c.CheckPixels(context.Background(), img, 1)
				if err != nil {
					t.Fatalf("clean image after a non-finite one: %v", err)
				}
				requireFinite(t, res[0])
			}
		})
	}
}

func summarizeResults(res []Result) string {
	var parts []string
	for _, r := range res {
		parts = append(parts, fmt.Sprintf("{nsfw=%v embeds[0]=%v}", r.NSFW, r.ImageEmbeds[0]))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// TestHugePixelValues injects pixel values of ±1e30, finite but far outside what preprocessing
// produces (about ±2.7): the call returns an error wrapping ErrNonFinite or results whose every score
// is finite, never a result computed from NaN.
func TestHugePixelValues(t *testing.T) {
	c := mustLoad(t, testModelDir, WithDevice(DeviceCPU))
	pix := make([]float32, 3*224*224)
	for i := range pix {
		pix[i] = 1e30 * float32(1-2*(i%2))
	}
	res, err := c.CheckPixels(context.Background(), pix, 1)
	switch {
	case errors.Is(err, ErrNonFinite):
		t.Logf("±1e30 pixels: %v", err)
	case err != nil:
		t.Fatalf("error %v, want ErrNonFinite or a finite result", err)
	default:
		t.Logf("±1e30 pixels: finite result nsfw=%v (LayerNorm is scale invariant)", res[0].NSFW)
		requireFinite(t, res[0])
	}
}
