package clip

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/gotchutil"
)

// ErrUnsupported is recorded for an activation the encoder does not implement (config validation
// refuses those first).
var ErrUnsupported = errors.New("clip: unsupported")

// Encoder is L pre-LayerNorm transformer blocks:
//
//	h = x + attention(layer_norm1(x));  out = h + mlp(layer_norm2(h))
//
// with the attention causal (position i sees positions 0..i: the text tower) or not (the vision
// tower). It holds the layers' weights (see [LayerStack]) and no other state, so one Encoder
// may serve any number of forward passes on its worker thread.
type Encoder struct {
	cfg    EncoderConfig
	stack  LayerStack
	heads  int64
	scale  float64 // head_dim^-0.5
	causal bool
	// SDPA selects scaled_dot_product_attention (is_causal for a causal encoder) over the explicit
	// attention (a −Inf mask for a causal encoder); the placement probe sets it at load.
	SDPA bool
}

// LayerStack holds each kind of encoder-layer weight of all L layers as one [Stacked], as
// [Encoder.spec] describes them. A forward pass takes layer l's weights as views (see Encoder.layer).
type LayerStack struct {
	norm1W, norm1B Stacked // [D] per layer
	qW, qB         Stacked // [D, D], [D]
	kW, kB         Stacked // [D, D], [D]
	vW, vB         Stacked // [D, D], [D]
	outW, outB     Stacked // [D, D], [D]
	norm2W, norm2B Stacked // [D]
	fc1W, fc1B     Stacked // [I, D], [I]
	fc2W, fc2B     Stacked // [D, I], [D]
}

// Stacked is one kind of encoder-layer weight of all L layers, held one of two ways as the loader
// decided ([Loading]):
//
//   - copied: one tensor [L, shape...] (16 large tensors rather than 16 per layer: gotch
//     keeps a 100 KB Go object per tensor handle, and weights live as long as the model); or
//   - mapped: the bytes of each layer's weight in the memory-mapped checkpoint, which the layers
//     of a file are not contiguous in (keys sort as strings: layers 0, 1, 10, 11, …), so they
//     cannot be one view. A forward pass views layer l's bytes while it runs layer l (16 from_blob
//     calls a layer, ~8 ms a ViT-L/14 forward, docs/zero-copy.md) instead of the model holding
//     ~400 handles (30–50 MB of Go heap) for its life.
type Stacked struct {
	all    *ts.Tensor  // copied: [L, shape...]; nil when mapped
	layers [][]byte    // mapped: layer l's data in the mapping, element-aligned and scanned at load
	shape  []int64     // one layer's shape
	dtype  gotch.DType // the compute dtype (mapped)
}

// layer returns layer l's weight [shape...], recorded on t: a view into the stacked copy or a view
// of the mapping (which must stay mapped until t drops it; the model's Close unmaps after its last
// forward).
func (s *Stacked) layer(t *gotchutil.Tape, l int) *ts.Tensor {
	if s.all != nil {
		return t.Select(s.all, 0, int64(l))
	}
	if l < 0 || l >= len(s.layers) {
		t.Fail("layer weight", fmt.Errorf("layer %d of %d: no weight bound", l, len(s.layers)))
		return nil
	}
	x, err := gotchutil.ViewCPU(nil, s.layers[l], s.dtype, s.shape...)
	return t.Record("view layer weight", x, err)
}

// newEncoder returns an encoder of cfg with no weights bound yet: its [Encoder.spec] binds them at
// load.
func newEncoder(cfg EncoderConfig, causal, sdpa bool) *Encoder {
	return &Encoder{
		cfg:    cfg,
		heads:  int64(cfg.NumAttentionHeads),
		scale:  1 / math.Sqrt(float64(cfg.HiddenSize/max(1, cfg.NumAttentionHeads))),
		causal: causal,
		SDPA:   sdpa,
	}
}

// Config returns the encoder's configuration.
func (e *Encoder) Config() EncoderConfig { return e.cfg }

// Forward runs the layers on x [B, T, D] (on t, in the compute dtype and device; dropped from t
// as soon as the first layer has used it). classOnly computes the last layer for the class token
// (position 0) only, for a pooled output that reads nothing else (a non-causal encoder only), and
// returns [B, D]; otherwise the result is [B, T, D]. With no layers, a class-only forward returns
// x's class token. ctx is checked between layers so a cancelled batch stops early.
func (e *Encoder) Forward(ctx context.Context, t *gotchutil.Tape, x *ts.Tensor, classOnly bool) *ts.Tensor {
	if classOnly && e.causal {
		t.Fail("encoder", errors.New("a class-token-only last layer needs non-causal attention"))
		return nil
	}
	var mask *ts.Tensor // [T, T], the additive causal mask of the explicit attention
	if e.causal && !e.SDPA && x != nil && t.Ok() {
		sz, err := x.Size()
		dev, err2 := x.Device()
		if err = errors.Join(err, err2); err != nil || len(sz) != 3 {
			t.Fail("encoder", fmt.Errorf("input shape %v: %v", sz, err))
			return nil
		}
		mask = t.CausalMask(sz[1], dev, x.DType())
	}
	last := e.cfg.NumHiddenLayers - 1
	for i := range e.cfg.NumHiddenLayers {
		if err := ctx.Err(); err != nil {
			t.Fail("encoder", err)
			return nil
		}
		var lw gotchutil.Tape // layer i's weights: views of the stacks or of the mapping
		layer := e.layer(&lw, i)
		if err := lw.Err(); err != nil {
			t.Fail("encoder", err)
		}
		if classOnly && i == last {
			x = layer.forwardClass(t, x) // [B, D]
		} else {
			x = layer.forward(t, x, mask)
		}
		lw.Release()
		if !t.Ok() {
			t.Fail(fmt.Sprintf("encoder layer %d", i), t.Err())
			return nil
		}
	}
	if classOnly && e.cfg.NumHiddenLayers == 0 {
		x = t.Select(x, 1, 0)
	}
	return x
}

// layer returns encoder layer l with its weights as views (of the stacks or of the mapping),
// recorded on t.
func (e *Encoder) layer(t *gotchutil.Tape, l int) encoderLayer {
	s := &e.stack
	eps := e.cfg.LayerNormEps
	return encoderLayer{
		norm1: LayerNorm{Weight: s.norm1W.layer(t, l), Bias: s.norm1B.layer(t, l), Eps: eps},
		norm2: LayerNorm{Weight: s.norm2W.layer(t, l), Bias: s.norm2B.layer(t, l), Eps: eps},
		attn: attention{
			qWeight: s.qW.layer(t, l), qBias: s.qB.layer(t, l),
			kWeight: s.kW.layer(t, l), kBias: s.kB.layer(t, l),
			vWeight: s.vW.layer(t, l), vBias: s.vB.layer(t, l),
			outWeight: s.outW.layer(t, l), outBias: s.outB.layer(t, l),
			heads: e.heads, scale: e.scale, useSDPA: e.SDPA, causal: e.causal,
		},
		mlp: mlp{
			fc1Weight: s.fc1W.layer(t, l), fc1Bias: s.fc1B.layer(t, l),
			fc2Weight: s.fc2W.layer(t, l), fc2Bias: s.fc2B.layer(t, l),
			act: e.cfg.HiddenAct,
		},
	}
}

// LayerNorm is a LayerNorm over the last dimension.
type LayerNorm struct {
	Weight, Bias *ts.Tensor // [D]
	Eps          float64
}

// Forward: x [..., D] → [..., D].
func (n LayerNorm) Forward(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	return t.LayerNorm(x, n.Weight, n.Bias, n.Eps)
}

// encoderLayer is one pre-LayerNorm transformer block:
//
//	h = x + attention(layer_norm1(x));  out = h + mlp(layer_norm2(h))
type encoderLayer struct {
	norm1, norm2 LayerNorm
	attn         attention
	mlp          mlp
}

// attention is multi-head self-attention as transformers' CLIPAttention computes it, with q, k and v
// as three linears; causal for the text model.
//
// Three [D, D] linears rather than one fused [3D, D]: the weights can then be views of a mapped
// checkpoint (a fused matrix is a copy: 302 MB and 0.1 s of load for ViT-L/14), and one code path
// serves the mapped and copied weights alike. Measured on the 2-vCPU shared AMD EPYC dev box
// (libtorch 2.1.0, 2 threads, ViT-L/14 shapes: D = 1024, 257 tokens, alternated in one process,
// median of 7; BenchmarkQKVProjection now), fused against three: 20.15 against 20.30 ms at batch 1,
// 143.0 against 144.4 ms at batch 8 — within the noise.
type attention struct {
	qWeight, qBias     *ts.Tensor // [D, D], [D]
	kWeight, kBias     *ts.Tensor // [D, D], [D]
	vWeight, vBias     *ts.Tensor // [D, D], [D]
	outWeight, outBias *ts.Tensor // [D, D], [D]
	heads              int64
	scale              float64 // head_dim^-0.5
	useSDPA            bool
	causal             bool // position i sees positions 0..i
}

type mlp struct {
	fc1Weight, fc1Bias *ts.Tensor // [I, D], [I]
	fc2Weight, fc2Bias *ts.Tensor // [D, I], [D]
	act                string
}

// forward: x [B, T, D] → [B, T, D]; mask is the additive causal mask [T, T] of a causal layer's
// explicit attention (nil otherwise). x must be on t and is dropped from it as soon as the residual
// sum has used it. Each half runs in its own scope, so that its intermediates are dropped as soon as
// it is done, and each residual sum is written into the branch's output: at most about two layer
// inputs' worth of memory besides the branch being computed.
func (l *encoderLayer) forward(t *gotchutil.Tape, x, mask *ts.Tensor) *ts.Tensor {
	a := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return l.attn.forward(s, l.norm1.Forward(s, x), mask) })
	h := t.AddOut(a, x, a) // x + attention
	t.Free(a)
	t.Free(x)
	return l.mlpHalf(t, h)
}

// forwardClass is forward for the class token only, for the last layer: the pooled output reads
// nothing else of its output. x [B, T, D] (dropped from t like forward's) → the class token's output
// [B, D]. Every token still provides keys and values; the query, the attention output, the MLP and
// the residual sums run on one row per image instead of T (the reference computes all T rows of the
// last layer and discards T−1 of them: 5.6 of ViT-L/14's 162 GFLOP per image).
func (l *encoderLayer) forwardClass(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	a := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return l.attn.forwardClass(s, l.norm1.Forward(s, x)) })
	cls := t.Select(x, 1, 0) // [B, D]
	h := t.AddOut(a, cls, a) // x + attention, class token
	t.Free(a)
	t.Free(cls)
	t.Free(x)
	return l.mlpHalf(t, h)
}

// mlpHalf is the second half of a layer: h + mlp(layer_norm2(h)), written into the MLP's output;
// h (on t) is dropped. h [..., D] → [..., D].
func (l *encoderLayer) mlpHalf(t *gotchutil.Tape, h *ts.Tensor) *ts.Tensor {
	m := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return l.mlp.forward(s, l.norm2.Forward(s, h)) })
	out := t.AddOut(m, h, m) // h + mlp
	t.Free(m)
	t.Free(h)
	return out
}

// forward: x [B, T, D] → [B, T, D]; mask [T, T] as for encoderLayer.forward.
func (a *attention) forward(t *gotchutil.Tape, x, mask *ts.Tensor) *ts.Tensor {
	b, n, d, ok := dims(t, x)
	if !ok {
		return nil
	}
	q := a.heads4(t, t.Linear(x, a.qWeight, a.qBias), b, n, d) // [B, H, T, hd]
	k := a.heads4(t, t.Linear(x, a.kWeight, a.kBias), b, n, d)
	v := a.heads4(t, t.Linear(x, a.vWeight, a.vBias), b, n, d)
	o := a.attend(t, q, k, v, mask)              // [B, H, T, hd]
	o = t.Reshape(t.Transpose(o, 1, 2), b, n, d) // [B, T, D]
	return t.Linear(o, a.outWeight, a.outBias)
}

// heads4 splits a projection y [B, T, D] into the heads: [B, H, T, hd] (a view).
func (a *attention) heads4(t *gotchutil.Tape, y *ts.Tensor, b, n, d int64) *ts.Tensor {
	return t.Transpose(t.Reshape(y, b, n, a.heads, d/a.heads), 1, 2)
}

// attend is attention's core: q [B, H, Tq, hd], k and v [B, H, T, hd] → the heads' results
// [B, H, Tq, hd]. mask is the additive causal mask [T, T] (Tq = T) of a causal layer's explicit
// attention.
func (a *attention) attend(t *gotchutil.Tape, q, k, v, mask *ts.Tensor) *ts.Tensor {
	switch {
	case a.useSDPA && a.causal:
		return t.SDPACausal(q, k, v, a.scale)
	case a.useSDPA:
		return t.SDPA(q, k, v, a.scale)
	}
	// Explicit attention (plus the causal mask); the softmax runs in float32 whatever the compute
	// dtype.
	scores := t.Scale(t.Matmul(q, t.Transpose(k, 2, 3)), a.scale) // [B, H, Tq, T]
	if a.causal {
		if mask == nil {
			t.Fail("attention", errors.New("causal attention without its mask"))
			return nil
		}
		scores = t.Add(scores, mask)
	}
	return t.Matmul(t.Softmax(scores, -1), v)
}

// forwardClass is forward with the class token (position 0) as the only query: x [B, T, D] →
// [B, D]. The keys and values come from all T tokens, the query from the class token only.
func (a *attention) forwardClass(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	b, n, d, ok := dims(t, x)
	if !ok {
		return nil
	}
	q := a.heads4(t, t.Linear(t.Select(x, 1, 0), a.qWeight, a.qBias), b, 1, d) // [B, H, 1, hd]
	k := a.heads4(t, t.Linear(x, a.kWeight, a.kBias), b, n, d)                 // [B, H, T, hd]
	v := a.heads4(t, t.Linear(x, a.vWeight, a.vBias), b, n, d)
	o := a.attend(t, q, k, v, nil)            // [B, H, 1, hd]
	o = t.Reshape(t.Transpose(o, 1, 2), b, d) // [B, D]
	return t.Linear(o, a.outWeight, a.outBias)
}

// dims returns the sizes of x [B, T, D]; false (with the failure on t) when t has failed or x is
// not three-dimensional.
func dims(t *gotchutil.Tape, x *ts.Tensor) (b, n, d int64, ok bool) {
	if !t.Ok() {
		return 0, 0, 0, false
	}
	sz, err := x.Size()
	if err == nil && len(sz) != 3 {
		err = fmt.Errorf("input shape %v, want [batch, tokens, hidden]", sz)
	}
	if err != nil {
		t.Fail("attention", err)
		return 0, 0, 0, false
	}
	return sz[0], sz[1], sz[2], true
}

// mlpChunkBytes bounds the hidden activations ([rows, I]) of one MLP pass: longer inputs go through
// in chunks of rows. Below glibc's largest mmap threshold (32 MiB), the buffers are reused from the
// heap instead of being fresh pages to fault in and zero at every layer, and peak memory stays low.
const mlpChunkBytes = 16 << 20

// forward: x [..., D] → [..., D] (x is left as it is). The activation runs in place on the first
// projection's output.
func (m *mlp) forward(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	if !t.Ok() {
		return nil
	}
	sz, err1 := x.Size()
	wsz, err2 := m.fc1Weight.Size()
	osz, err3 := m.fc2Weight.Size()
	dev, err4 := x.Device()
	if err := errors.Join(err1, err2, err3, err4); err != nil || len(sz) == 0 || len(wsz) != 2 || len(osz) != 2 {
		t.Fail("mlp", fmt.Errorf("shapes %v, %v, %v: %v", sz, wsz, osz, err))
		return nil
	}
	rows := int64(1)
	for _, d := range sz[:len(sz)-1] {
		rows *= d
	}
	chunk := max(1, mlpChunkBytes/(wsz[0]*int64(x.DType().Size())))
	if rows <= chunk {
		h := t.Linear(x, m.fc1Weight, m.fc1Bias)
		h = activationInPlace(t, m.act, h)
		return t.Linear(h, m.fc2Weight, m.fc2Bias)
	}
	n := (rows + chunk - 1) / chunk
	chunk = (rows + n - 1) / n // equal chunks
	x2 := t.Reshape(x, rows, sz[len(sz)-1])
	out := t.Empty(x.DType(), dev, rows, osz[0])
	for r := int64(0); r < rows && t.Ok(); r += chunk {
		k := min(chunk, rows-r)
		t.Scope(func(s *gotchutil.Tape) *ts.Tensor {
			h := s.Linear(s.Narrow(x2, 0, r, k), m.fc1Weight, m.fc1Bias)
			h = activationInPlace(s, m.act, h)
			s.LinearOut(s.Narrow(out, 0, r, k), h, m.fc2Weight, m.fc2Bias)
			return nil
		})
	}
	t.Free(x2)
	return t.Reshape(out, append(sz[:len(sz)-1:len(sz)-1], osz[0])...)
}

// activationInPlace is activation for x, a temporary that nothing else uses: quick_gelu, the
// activation of the published model, overwrites x (one extra buffer instead of three, and the same
// arithmetic as the reference: x · σ(1.702·x)); the others are computed out of place.
func activationInPlace(t *gotchutil.Tape, name string, x *ts.Tensor) *ts.Tensor {
	if name != "quick_gelu" {
		return activation(t, name, x)
	}
	s := t.Scale(x, 1.702)
	sig := t.SigmoidOut(s, s)
	y := t.MulOut(x, x, sig)
	t.Free(sig)
	t.Free(s)
	return y
}

// activation applies one of transformers' ACT2FN functions by name.
func activation(t *gotchutil.Tape, name string, x *ts.Tensor) *ts.Tensor {
	switch name {
	case "quick_gelu": // x·σ(1.702x)
		return t.Mul(x, t.Sigmoid(t.Scale(x, 1.702)))
	case "gelu":
		return t.Gelu(x, "none")
	case "gelu_new", "gelu_pytorch_tanh":
		return t.Gelu(x, "tanh")
	case "relu":
		return t.Relu(x)
	case "silu":
		return t.Silu(x)
	}
	t.Fail("activation", fmt.Errorf("%w: hidden_act %q", ErrUnsupported, name))
	return nil
}
