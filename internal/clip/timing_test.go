package clip

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/gotchutil"
)

// Benchmarks behind choices in the encoder and the loader (docs/zero-copy.md), at ViT-L/14's shapes
// on the CPU: go test -run '^$' -bench 'QKVProjection|WeightAlignment' ./internal/clip

// randn is a standard normal float32 CPU tensor of shape, recorded on t.
func randn(t *gotchutil.Tape, shape ...int64) *ts.Tensor {
	x, err := ts.Randn(shape, gotch.Float, gotch.CPU)
	return t.Record("randn", x, err)
}

// benchTape runs fn b.N times, each on a tape of its own released after it.
func benchTape(b *testing.B, fn func(s *gotchutil.Tape)) {
	b.Helper()
	for b.Loop() {
		var s gotchutil.Tape
		fn(&s)
		err := s.Err()
		s.Release()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// misalignedView copies w's data to an address 4 bytes past a 64-byte boundary, as most tensors of a
// mapped safetensors file start, and returns a view of it (recorded on t); unpin when the view is freed.
func misalignedView(t *gotchutil.Tape, w *ts.Tensor, pin *runtime.Pinner, shape ...int64) *ts.Tensor {
	b, err := gotchutil.HostBytes(w)
	if err != nil {
		t.Fail("misaligned view", err)
		return nil
	}
	buf := make([]byte, len(b)+128)
	off := (64 - int(uintptr(unsafe.Pointer(&buf[0]))%64) + 4) % 64
	mis := buf[off : off+len(b)]
	copy(mis, b)
	view, err := gotchutil.ViewCPU(pin, mis, gotch.Float, shape...)
	return t.Record("view", view, err)
}

// BenchmarkQKVProjection: the attention's input projections, q, k and v fused into one [3D, D] linear
// (then reshaped and split, as the encoder did before issue 17) against the three [D, D] linears the
// encoder runs now, each made contiguous as the attention kernel reads them.
func BenchmarkQKVProjection(b *testing.B) {
	const d, n, heads = 1024, 257, 16
	var w gotchutil.Tape
	defer w.Release()
	rnd := func(shape ...int64) *ts.Tensor { return w.Scale(randn(&w, shape...), 0.03) }
	wq, wk, wv, bq, bk, bv := rnd(d, d), rnd(d, d), rnd(d, d), rnd(d), rnd(d), rnd(d)
	wqkv, bqkv := w.Cat(0, wq, wk, wv), w.Cat(0, bq, bk, bv)
	if err := w.Err(); err != nil {
		b.Fatal(err)
	}
	hd := int64(d / heads)
	variants := []struct {
		name string
		proj func(s *gotchutil.Tape, x *ts.Tensor, bs int64) []*ts.Tensor
	}{
		{"fused", func(s *gotchutil.Tape, x *ts.Tensor, bs int64) []*ts.Tensor {
			qkv := s.Permute(s.Reshape(s.Linear(x, wqkv, bqkv), bs, n, 3, heads, hd), 2, 0, 3, 1, 4)
			return []*ts.Tensor{s.Select(qkv, 0, 0), s.Select(qkv, 0, 1), s.Select(qkv, 0, 2)}
		}},
		{"three", func(s *gotchutil.Tape, x *ts.Tensor, bs int64) []*ts.Tensor {
			split := func(y *ts.Tensor) *ts.Tensor { return s.Transpose(s.Reshape(y, bs, n, heads, hd), 1, 2) }
			return []*ts.Tensor{split(s.Linear(x, wq, bq)), split(s.Linear(x, wk, bk)), split(s.Linear(x, wv, bv))}
		}},
	}
	for _, bs := range []int64{1, 8} {
		x := rnd(bs, n, d)
		for _, v := range variants {
			b.Run(fmt.Sprintf("batch=%d/%s", bs, v.name), func(b *testing.B) {
				benchTape(b, func(s *gotchutil.Tape) {
					for _, p := range v.proj(s, x, bs) {
						s.Contiguous(p)
					}
				})
			})
		}
	}
}

// BenchmarkWeightAlignment: a linear whose weight is libtorch's own (64-byte aligned) tensor against the
// same weight viewed 4 bytes past a 64-byte boundary, at ViT-L/14's MLP and attention shapes.
func BenchmarkWeightAlignment(b *testing.B) {
	var w gotchutil.Tape
	defer w.Release()
	for _, sh := range []struct{ rows, in, out int64 }{{686, 1024, 4096}, {686, 4096, 1024}, {257, 1024, 4096}, {2056, 1024, 1024}} {
		weight, bias, x := randn(&w, sh.out, sh.in), randn(&w, sh.out), randn(&w, sh.rows, sh.in)
		var pin runtime.Pinner
		view := misalignedView(&w, weight, &pin, sh.out, sh.in)
		if err := w.Err(); err != nil {
			b.Fatal(err)
		}
		for _, v := range []struct {
			name   string
			weight *ts.Tensor
		}{{"aligned", weight}, {"plus4bytes", view}} {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", sh.rows, sh.in, sh.out, v.name), func(b *testing.B) {
				benchTape(b, func(s *gotchutil.Tape) { s.Linear(x, v.weight, bias) })
			})
		}
		w.Free(view)
		pin.Unpin()
	}
}

// TestMisalignedWeightView: a linear with its weight viewed 4 bytes past a 64-byte boundary (as most
// weights of a mapped safetensors file are) gives exactly the result of the aligned weight.
func TestMisalignedWeightView(t *testing.T) {
	var w gotchutil.Tape
	defer w.Release()
	weight, bias, x := randn(&w, 48, 32), randn(&w, 48), randn(&w, 5, 32)
	var pin runtime.Pinner
	defer pin.Unpin()
	view := misalignedView(&w, weight, &pin, 48, 32)
	y1, err1 := gotchutil.Float32s(w.Linear(x, weight, bias))
	y2, err2 := gotchutil.Float32s(w.Linear(x, view, bias))
	if err := w.Err(); err != nil || err1 != nil || err2 != nil {
		t.Fatal(err, err1, err2)
	}
	if !slices.Equal(y1, y2) {
		t.Error("a misaligned view of the weight gives a different linear result from the aligned weight")
	}
	w.Free(view)
}
