package gotchutil

import (
	"encoding/binary"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Ops the CLIP text tower needs on top of those of tape.go.

// Int64 makes a CPU int64 tensor of the given shape from data (copied), e.g. token ids.
func (t *Tape) Int64(data []int64, shape ...int64) *ts.Tensor {
	if t.err != nil {
		return nil
	}
	b := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	y, err := FromBytes(b, gotch.Int64, shape...)
	return t.Record("tensor_from_data", y, err)
}

// IndexSelect returns the entries of x at index (an int64 vector) along dim: for dim 0 and a
// matrix x [N, D], the rows index → [len(index), D] (an embedding lookup).
func (t *Tape) IndexSelect(x *ts.Tensor, dim int64, index *ts.Tensor) *ts.Tensor {
	if t.skip(x, index) {
		return nil
	}
	y, err := x.IndexSelect(dim, index, false)
	return t.Record("index_select", y, err)
}

// SDPACausal is scaled dot-product attention with a causal mask (query i attends to keys 0..i)
// and the given scale, without dropout. q, k, v: [B, heads, T, head_dim] → [B, heads, T, head_dim].
func (t *Tape) SDPACausal(q, k, v *ts.Tensor, scale float64) *ts.Tensor {
	if t.skip(q, k, v) {
		return nil
	}
	y, err := ts.ScaledDotProductAttention(q, k, v, ts.None, 0, true, []float64{scale})
	return t.Record("scaled_dot_product_attention", y, err)
}

// CausalMask makes the additive causal mask [T, T] on device in dtype: 0 on and below the
// diagonal, −Inf above it (key j > query i), to add to attention scores before the softmax.
func (t *Tape) CausalMask(n int64, device gotch.Device, dtype gotch.DType) *ts.Tensor {
	if t.err != nil {
		return nil
	}
	m := make([]float32, n*n)
	inf := float32(math.Inf(-1))
	for i := int64(0); i < n; i++ {
		for j := i + 1; j < n; j++ {
			m[i*n+j] = inf
		}
	}
	return t.ToDevice(t.Float32(m, n, n), device, dtype)
}
