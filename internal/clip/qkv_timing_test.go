package clip

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/gotchutil"
)

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
	rnd := func(shape ...int64) *ts.Tensor {
		x, err := ts.Randn(shape, gotch.Float, gotch.CPU)
		return w.Scale(w.Record("randn", x, err), 0.03)
	}
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
		times := map[string][]float64{}
		for r := range rounds + 1 {
			for _, v := range []struct {
				name string
				f    func(*gotchutil.Tape, *ts.Tensor, int64) (q, k, v *ts.Tensor)
			}{{"fused", fused}, {"three", three}} {
				var s gotchutil.Tape
				start := time.Now()
				q, k, vv := v.f(&s, x, b)
				// the attention reads q, k, v: make them contiguous as SDPA's kernel would read them
				s.Contiguous(q)
				s.Contiguous(k)
				s.Contiguous(vv)
				el := time.Since(start).Seconds()
				if err := s.Err(); err != nil {
					t.Fatal(err)
				}
				s.Release()
				if r > 0 {
					times[v.name] = append(times[v.name], el)
				}
			}
		}
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
		for _, name := range []string{"fused", "three"} {
			ts := slices.Sorted(slices.Values(times[name]))
			t.Logf("batch %d %s: median %.2f ms, min %.2f ms (%d rounds, alternated)", b, name, 1000*ts[len(ts)/2], 1000*ts[0], len(ts))
		}
	}
}
