package clip

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/gotchutil"
)

// Timings behind choices in the encoder and the loader (docs/zero-copy.md): they run only when asked
// for by an environment variable, and assert that the variants timed compute the same thing.

// variant is one of the computations a timing alternates; run records its work on s.
type variant struct {
	name string
	run  func(s *gotchutil.Tape)
}

// alternate runs the variants in turn, rounds+1 times (the first round untimed), each on a tape of
// its own released after it, and returns each variant's times in seconds.
func alternate(t *testing.T, rounds int, vs ...variant) map[string][]float64 {
	t.Helper()
	times := map[string][]float64{}
	for r := range rounds + 1 {
		for _, v := range vs {
			var s gotchutil.Tape
			start := time.Now()
			v.run(&s)
			el := time.Since(start).Seconds()
			err := s.Err()
			s.Release()
			if err != nil {
				t.Fatal(err)
			}
			if r > 0 {
				times[v.name] = append(times[v.name], el)
			}
		}
	}
	return times
}

// logMedians logs the median and minimum time of each named variant.
func logMedians(t *testing.T, label string, times map[string][]float64, names ...string) {
	t.Helper()
	for _, name := range names {
		v := slices.Sorted(slices.Values(times[name]))
		t.Logf("%s %s: median %.2f ms, min %.2f ms (%d rounds, alternated)", label, name, 1000*v[len(v)/2], 1000*v[0], len(v))
	}
}

// randn is a standard normal float32 CPU tensor of shape, recorded on t.
func randn(t *gotchutil.Tape, shape ...int64) *ts.Tensor {
	x, err := ts.Randn(shape, gotch.Float, gotch.CPU)
	return t.Record("randn", x, err)
}

// TestQKVProjectionTiming times the attention's input projections at ViT-L/14's shapes (D = 1024,
// 257 tokens) on the CPU, alternated in one process: q, k and v fused into one [3D, D] linear (then
// reshaped and split, as the encoder did before issue 17) against three [D, D] linears. It is a
// measurement, not a check: it runs only with SAFETY_QKV_TIMING=1 and logs the medians; what it
// asserts is that both give the same q, k and v.
func TestQKVProjectionTiming(t *testing.T) {
	if os.Getenv("SAFETY_QKV_TIMING") != "1" {
		t.Skip("a timing, not a test: set SAFETY_QKV_TIMING=1")
	}
	const d, n, heads, rounds = 1024, 257, 16, 7
	var w gotchutil.Tape
	defer w.Release()
	rnd := func(shape ...int64) *ts.Tensor { return w.Scale(randn(&w, shape...), 0.03) }
	wq, wk, wv, bq, bk, bv := rnd(d, d), rnd(d, d), rnd(d, d), rnd(d), rnd(d), rnd(d)
	wqkv, bqkv := w.Cat(0, wq, wk, wv), w.Cat(0, bq, bk, bv)
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	hd := int64(d / heads)
	fused := func(s *gotchutil.Tape, x *ts.Tensor, b int64) (q, k, v *ts.Tensor) {
		qkv := s.Linear(x, wqkv, bqkv)
		qkv = s.Permute(s.Reshape(qkv, b, n, 3, heads, hd), 2, 0, 3, 1, 4)
		return s.Select(qkv, 0, 0), s.Select(qkv, 0, 1), s.Select(qkv, 0, 2)
	}
	three := func(s *gotchutil.Tape, x *ts.Tensor, b int64) (q, k, v *ts.Tensor) {
		split := func(y *ts.Tensor) *ts.Tensor { return s.Transpose(s.Reshape(y, b, n, heads, hd), 1, 2) }
		return split(s.Linear(x, wq, bq)), split(s.Linear(x, wk, bk)), split(s.Linear(x, wv, bv))
	}
	for _, b := range []int64{1, 8} {
		var xt gotchutil.Tape
		x := rnd(b, n, d)
		proj := func(f func(*gotchutil.Tape, *ts.Tensor, int64) (q, k, v *ts.Tensor)) func(*gotchutil.Tape) {
			return func(s *gotchutil.Tape) {
				q, k, v := f(s, x, b)
				// the attention reads q, k, v: make them contiguous as SDPA's kernel would read them
				s.Contiguous(q)
				s.Contiguous(k)
				s.Contiguous(v)
			}
		}
		times := alternate(t, rounds, variant{"fused", proj(fused)}, variant{"three", proj(three)})
		var s gotchutil.Tape
		q1, k1, v1 := fused(&s, x, b)
		q2, k2, v2 := three(&s, x, b)
		for i, p := range [][2]*ts.Tensor{{q1, q2}, {k1, k2}, {v1, v2}} {
			a, err1 := gotchutil.Float32s(s.Contiguous(p[0]))
			c, err2 := gotchutil.Float32s(s.Contiguous(p[1]))
			if err1 != nil || err2 != nil || len(a) != len(c) {
				t.Fatal(err1, err2)
			}
			maxd := float32(0)
			for j := range a {
				maxd = max(maxd, a[j]-c[j], c[j]-a[j])
			}
			if maxd > 1e-4 {
				t.Errorf("batch %d projection %d: fused and three linears differ by %g", b, i, maxd)
			}
		}
		s.Release()
		xt.Release()
		logMedians(t, fmt.Sprintf("batch %d", b), times, "fused", "three")
	}
}

// TestWeightAlignmentTiming times a linear whose weight is libtorch's own (64-byte aligned) copy
// against the same weight viewed at an address 4 bytes past a 64-byte boundary, as most tensors of a
// mapped safetensors file are (docs/zero-copy.md), at ViT-L/14's MLP shapes, alternated in one
// process. A measurement: it runs only with SAFETY_ALIGN_TIMING=1; what it asserts is that both give
// the same result.
func TestWeightAlignmentTiming(t *testing.T) {
	if os.Getenv("SAFETY_ALIGN_TIMING") != "1" {
		t.Skip("a timing, not a test: set SAFETY_ALIGN_TIMING=1")
	}
	var w gotchutil.Tape
	defer w.Release()
	rnd := func(shape ...int64) *ts.Tensor { return randn(&w, shape...) }
	for _, sh := range []struct{ rows, in, out int64 }{{686, 1024, 4096}, {686, 4096, 1024}, {257, 1024, 4096}, {2056, 1024, 1024}} {
		weight, bias, x := rnd(sh.out, sh.in), rnd(sh.out), rnd(sh.rows, sh.in)
		b, err := gotchutil.HostBytes(weight)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(b)+128)
		off := (64 - int(uintptr(unsafe.Pointer(&buf[0]))%64) + 4) % 64
		mis := buf[off : off+len(b)]
		copy(mis, b)
		var pin runtime.Pinner
		view, err := gotchutil.ViewCPU(&pin, mis, gotch.Float, sh.out, sh.in)
		view = w.Record("view", view, err)
		lin := func(w *ts.Tensor) func(*gotchutil.Tape) { return func(s *gotchutil.Tape) { s.Linear(x, w, bias) } }
		times := alternate(t, 7, variant{"aligned", lin(weight)}, variant{"+4 bytes", lin(view)})
		var s gotchutil.Tape
		y1, err1 := gotchutil.Float32s(s.Linear(x, weight, bias))
		y2, err2 := gotchutil.Float32s(s.Linear(x, view, bias))
		s.Release()
		if err1 != nil || err2 != nil || !slices.Equal(y1, y2) {
			t.Errorf("%v: aligned and misaligned weights give different results (%v, %v)", sh, err1, err2)
		}
		logMedians(t, fmt.Sprintf("[%d,%d] x [%d,%d]ᵀ", sh.rows, sh.in, sh.out, sh.in), times, "aligned", "+4 bytes")
		w.Free(view)
		pin.Unpin()
	}
}
