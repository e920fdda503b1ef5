package gotchutil

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// ErrTorch marks an error reported by libtorch.
var ErrTorch = errors.New("libtorch")

// TorchError cleans an error returned by gotch (which appends a Go stack trace to libtorch's message)
// and wraps it with [ErrTorch] and op, the name of the failing operation.
func TorchError(op string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if i := strings.Index(msg, "\ngoroutine "); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.TrimSpace(strings.ReplaceAll(msg, "Libtorch API Error:", ""))
	if i := strings.Index(msg, "\nException raised from"); i >= 0 {
		msg = strings.TrimSpace(msg[:i])
	}
	return fmt.Errorf("%s: %w: %s", op, ErrTorch, msg)
}

// Tape records the tensors created by a sequence of operations so they can be dropped together,
// and keeps the first error. Once an operation has failed, every later one is skipped and returns
// nil, so op sequences can be written without an error check per line; check [Tape.Err] at the end.
//
// A Tape is not safe for concurrent use; it belongs to the [Worker] call that made it.
type Tape struct {
	err  error
	live []*ts.Tensor
}

// Err returns the first error recorded on the tape.
func (t *Tape) Err() error { return t.err }

// Fail records err (wrapped with op) unless an error is already recorded.
func (t *Tape) Fail(op string, err error) {
	if t.err == nil && err != nil {
		t.err = fmt.Errorf("%s: %w", op, err)
	}
}

// Ok reports whether no error has been recorded.
func (t *Tape) Ok() bool { return t.err == nil }

// Record adds x, the result of op, to the tape; if err is non-nil it is recorded instead and nil returned.
func (t *Tape) Record(op string, x *ts.Tensor, err error) *ts.Tensor {
	if err != nil {
		if t.err == nil {
			t.err = TorchError(op, err)
		}
		if x != nil {
			_ = x.Drop()
		}
		return nil
	}
	t.live = append(t.live, x)
	return x
}

// Take removes x from the tape: the caller now owns it and must drop it.
func (t *Tape) Take(x *ts.Tensor) *ts.Tensor {
	for i := len(t.live) - 1; i >= 0; i-- {
		if t.live[i] == x {
			t.live = append(t.live[:i], t.live[i+1:]...)
			return x
		}
	}
	return x
}

// Free drops x now (it must be on the tape); useful to bound peak memory inside a long sequence.
func (t *Tape) Free(x *ts.Tensor) {
	if x == nil {
		return
	}
	t.Take(x)
	_ = x.Drop()
}

// Release drops every tensor on the tape except those in keep, which leave the tape.
func (t *Tape) Release(keep ...*ts.Tensor) {
	for _, x := range t.live {
		kept := false
		for _, k := range keep {
			if k == x {
				kept = true
				break
			}
		}
		if !kept {
			_ = x.Drop()
		}
	}
	t.live = t.live[:0]
}

// Len returns the number of tensors on the tape.
func (t *Tape) Len() int { return len(t.live) }

// Scope runs fn with a child tape. The tensor fn returns moves onto t; everything else fn created is
// dropped when fn returns. An error in fn is recorded on t.
func (t *Tape) Scope(fn func(s *Tape) *ts.Tensor) *ts.Tensor {
	if t.err != nil {
		return nil
	}
	var s Tape
	out := fn(&s)
	if s.err != nil {
		t.err = s.err
		s.Release()
		return nil
	}
	s.Release(out)
	if out != nil {
		t.live = append(t.live, out)
	}
	return out
}

func (t *Tape) skip(xs ...*ts.Tensor) bool {
	if t.err != nil {
		return true
	}
	for _, x := range xs {
		if x == nil {
			t.err = errors.New("gotchutil: nil tensor operand")
			return true
		}
	}
	return false
}

// Linear returns x·wᵀ + b. x: [..., in]; w: [out, in]; b: [out] or nil → [..., out].
func (t *Tape) Linear(x, w, b *ts.Tensor) *ts.Tensor {
	if t.skip(x, w) {
		return nil
	}
	if b == nil {
		b = ts.None
	}
	y, err := ts.Linear(x, w, b)
	return t.Record("linear", y, err)
}

// LayerNorm normalises the last dimension of x and applies w and b ([hidden]).
func (t *Tape) LayerNorm(x, w, b *ts.Tensor, eps float64) *ts.Tensor {
	if t.skip(x, w, b) {
		return nil
	}
	sz, err := w.Size()
	if err != nil {
		return t.Record("layer_norm", nil, err)
	}
	y, err := ts.LayerNorm(x, sz, w, b, eps, true)
	return t.Record("layer_norm", y, err)
}

// Conv2d is a 2-D convolution without bias, with the given stride and no padding.
// x: [B, C, H, W]; w: [O, C, k, k] → [B, O, H', W'].
func (t *Tape) Conv2d(x, w *ts.Tensor, stride int64) *ts.Tensor {
	if t.skip(x, w) {
		return nil
	}
	y, err := ts.Conv2d(x, w, ts.None, []int64{stride, stride}, []int64{0, 0}, []int64{1, 1}, 1)
	return t.Record("conv2d", y, err)
}

// Add returns a + b (broadcasting).
func (t *Tape) Add(a, b *ts.Tensor) *ts.Tensor {
	if t.skip(a, b) {
		return nil
	}
	y, err := a.Add(b, false)
	return t.Record("add", y, err)
}

// Sub returns a − b (broadcasting).
func (t *Tape) Sub(a, b *ts.Tensor) *ts.Tensor {
	if t.skip(a, b) {
		return nil
	}
	y, err := a.Sub(b, false)
	return t.Record("sub", y, err)
}

// Mul returns a ⊙ b (broadcasting).
func (t *Tape) Mul(a, b *ts.Tensor) *ts.Tensor {
	if t.skip(a, b) {
		return nil
	}
	y, err := a.Mul(b, false)
	return t.Record("mul", y, err)
}

// Div returns a / b (broadcasting).
func (t *Tape) Div(a, b *ts.Tensor) *ts.Tensor {
	if t.skip(a, b) {
		return nil
	}
	y, err := a.Div(b, false)
	return t.Record("div", y, err)
}

// Scale returns x·s.
func (t *Tape) Scale(x *ts.Tensor, s float64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	sc := ts.FloatScalar(s)
	defer sc.Drop()
	y, err := x.MulScalar(sc, false)
	return t.Record("mul_scalar", y, err)
}

// AddScalar returns x + s.
func (t *Tape) AddScalar(x *ts.Tensor, s float64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	sc := ts.FloatScalar(s)
	defer sc.Drop()
	y, err := x.AddScalar(sc, false)
	return t.Record("add_scalar", y, err)
}

// Clamp limits x to [lo, hi].
func (t *Tape) Clamp(x *ts.Tensor, lo, hi float64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	a, b := ts.FloatScalar(lo), ts.FloatScalar(hi)
	defer a.Drop()
	defer b.Drop()
	y, err := x.Clamp(a, b, false)
	return t.Record("clamp", y, err)
}

// Round rounds half to even, elementwise.
func (t *Tape) Round(x *ts.Tensor) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Round(false)
	return t.Record("round", y, err)
}

// Matmul is the batched matrix product a·b.
func (t *Tape) Matmul(a, b *ts.Tensor) *ts.Tensor {
	if t.skip(a, b) {
		return nil
	}
	y, err := a.Matmul(b, false)
	return t.Record("matmul", y, err)
}

// Sigmoid is the logistic function, elementwise.
func (t *Tape) Sigmoid(x *ts.Tensor) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Sigmoid(false)
	return t.Record("sigmoid", y, err)
}

// Gelu is GELU with approximate "none" (erf) or "tanh".
func (t *Tape) Gelu(x *ts.Tensor, approximate string) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Gelu(approximate, false)
	return t.Record("gelu", y, err)
}

// Relu is max(x, 0).
func (t *Tape) Relu(x *ts.Tensor) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Relu(false)
	return t.Record("relu", y, err)
}

// Silu is x·sigmoid(x).
func (t *Tape) Silu(x *ts.Tensor) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Silu(false)
	return t.Record("silu", y, err)
}

// Softmax over dim, computed in float32 and returned in x's dtype.
func (t *Tape) Softmax(x *ts.Tensor, dim int64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Softmax(dim, gotch.Float, false)
	y = t.Record("softmax", y, err)
	return t.ToDType(y, x.DType())
}

// ToDType converts x to dtype; it returns x itself when the dtype already matches.
func (t *Tape) ToDType(x *ts.Tensor, dtype gotch.DType) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	if x.DType() == dtype {
		return x
	}
	y, err := x.Totype(dtype, false)
	return t.Record("to_dtype", y, err)
}

// ToDevice copies x to device (and dtype); it returns x itself when nothing changes.
func (t *Tape) ToDevice(x *ts.Tensor, device gotch.Device, dtype gotch.DType) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	d, err := x.Device()
	if err == nil && d == device && x.DType() == dtype {
		return x
	}
	y, err := x.ToDevice(device, dtype, false, false, false)
	return t.Record("to_device", y, err)
}

// Reshape returns x with the given shape (a view when possible).
func (t *Tape) Reshape(x *ts.Tensor, shape ...int64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Reshape(shape, false)
	return t.Record("reshape", y, err)
}

// Permute reorders the dimensions of x.
func (t *Tape) Permute(x *ts.Tensor, dims ...int64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Permute(dims, false)
	return t.Record("permute", y, err)
}

// Transpose swaps dimensions a and b of x.
func (t *Tape) Transpose(x *ts.Tensor, a, b int64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Transpose(a, b, false)
	return t.Record("transpose", y, err)
}

// Contiguous returns x laid out contiguously.
func (t *Tape) Contiguous(x *ts.Tensor) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Contiguous(false)
	return t.Record("contiguous", y, err)
}

// Flatten merges dimensions start..end (inclusive) of x.
func (t *Tape) Flatten(x *ts.Tensor, start, end int64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Flatten(start, end, false)
	return t.Record("flatten", y, err)
}

// Select returns x indexed at i along dim (that dimension removed).
func (t *Tape) Select(x *ts.Tensor, dim, i int64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Select(dim, i, false)
	return t.Record("select", y, err)
}

// Narrow returns x[start:start+length] along dim.
func (t *Tape) Narrow(x *ts.Tensor, dim, start, length int64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Narrow(dim, start, length, false)
	return t.Record("narrow", y, err)
}

// Expand broadcasts x to shape (-1 keeps a dimension).
func (t *Tape) Expand(x *ts.Tensor, shape ...int64) *ts.Tensor {
	if t.skip(x) {
		return nil
	}
	y, err := x.Expand(shape, false, false)
	return t.Record("expand", y, err)
}

// Cat concatenates xs along dim.
func (t *Tape) Cat(dim int64, xs ...*ts.Tensor) *ts.Tensor {
	if t.skip(xs...) {
		return nil
	}
	y, err := ts.Cat(xs, dim)
	return t.Record("cat", y, err)
}

// SDPA is scaled dot-product attention without mask or dropout, with the given scale.
// q, k, v: [B, heads, tokens, head_dim] → [B, heads, tokens, head_dim].
func (t *Tape) SDPA(q, k, v *ts.Tensor, scale float64) *ts.Tensor {
	if t.skip(q, k, v) {
		return nil
	}
	y, err := ts.ScaledDotProductAttention(q, k, v, ts.None, 0, false, []float64{scale})
	return t.Record("scaled_dot_product_attention", y, err)
}

// Float32 makes a CPU float32 tensor of the given shape from data (copied).
func (t *Tape) Float32(data []float32, shape ...int64) *ts.Tensor {
	if t.err != nil {
		return nil
	}
	y, err := FromFloat32(data, shape...)
	return t.Record("tensor_from_data", y, err)
}

// The *Out operations write their result into out, an existing tensor of the right shape, dtype and
// device (it may be one of the inputs: elementwise ops then work in place), and return a new handle
// to it, recorded on the tape; out itself stays where it was (drop it when done, the storage lives
// on through the returned handle). gotch's own in-place methods (Add_, Mul_, …) replace the handle
// they are called on and leak the old one, with its storage, so they are not used.

// Empty makes an uninitialised tensor of dtype and shape (at least one dimension) on device.
func (t *Tape) Empty(dtype gotch.DType, device gotch.Device, shape ...int64) *ts.Tensor {
	if t.err != nil {
		return nil
	}
	if len(shape) == 0 {
		t.Fail("empty", errors.New("gotchutil: Empty needs at least one dimension"))
		return nil
	}
	y, err := ts.Empty(shape, dtype, device)
	return t.Record("empty", y, err)
}

// LinearOut writes x·wᵀ + b into out. x: [n, in] (2-D: libtorch then fuses the bias into the GEMM,
// as linear does); w: [out, in]; b: [out] or nil; out: [n, out].
func (t *Tape) LinearOut(out, x, w, b *ts.Tensor) *ts.Tensor {
	if t.skip(out, x, w) {
		return nil
	}
	if b == nil {
		b = ts.None
	}
	y, err := ts.LinearOut(out, x, w, b)
	return t.Record("linear_out", y, err)
}

// AddOut writes a + b (broadcasting) into out.
func (t *Tape) AddOut(out, a, b *ts.Tensor) *ts.Tensor {
	if t.skip(out, a, b) {
		return nil
	}
	y, err := a.AddOut(out, b, false)
	return t.Record("add_out", y, err)
}

// MulOut writes a ⊙ b (broadcasting) into out.
func (t *Tape) MulOut(out, a, b *ts.Tensor) *ts.Tensor {
	if t.skip(out, a, b) {
		return nil
	}
	y, err := a.MulOut(out, b, false)
	return t.Record("mul_out", y, err)
}

// SigmoidOut writes the logistic function of x into out.
func (t *Tape) SigmoidOut(out, x *ts.Tensor) *ts.Tensor {
	if t.skip(out, x) {
		return nil
	}
	y, err := x.SigmoidOut(out, false)
	return t.Record("sigmoid_out", y, err)
}
