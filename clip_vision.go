package safety

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/gotchutil"
)

// The vision tower of CLIP as StableDiffusionSafetyChecker holds it: transformers' CLIPVisionModel
// under the key prefix "vision_model.vision_model.", followed by the bias-free visual projection.
//
//	pixels [B,3,S,S] ─patch conv─▶ [B,N,D] ─prepend CLS, add positions─▶ [B,N+1,D] ─pre_layrnorm─▶
//	L × encoderLayer ─▶ post_layernorm(CLS) = pooled [B,D] ─visual_projection─▶ image_embeds [B,P]
//
// D = hidden size, N = (S/patch)², P = projection dim. Every method here runs on the Checker's worker
// thread and records what it creates on the caller's tape.

// Key prefixes of the vision tower: diffusers' published checkpoints nest transformers'
// CLIPVisionModel (vision_model.vision_model.…); some exports flatten it to vision_model.….
const (
	visionPrefix     = "vision_model.vision_model."
	flatVisionPrefix = "vision_model."
)

// visionTower holds the weights of the vision tower and projection, on the compute device and dtype.
type visionTower struct {
	cfg checkpoint.VisionConfig

	patchWeight *ts.Tensor // [D, C, p, p]
	classEmbed  *ts.Tensor // [D]
	posEmbed    *ts.Tensor // [N+1, D]
	preNorm     layerNorm
	stack       layerStack // the encoder layers' weights
	postNorm    layerNorm
	projection  *ts.Tensor // [P, D]

	heads   int64
	scale   float64 // head_dim^-0.5
	useSDPA bool    // scaled_dot_product_attention is available in this libtorch
}

// layerStack holds each kind of encoder-layer weight of all L layers in one tensor, stacked along a
// leading layer dimension, as loadWeights loads them: a dozen large tensors rather than a dozen per
// layer (gotch keeps a 100 KB Go object per tensor handle, and weights live as long as the Checker).
// A forward pass takes layer l's weights as views (see visionTower.layer).
type layerStack struct {
	norm1W, norm1B *ts.Tensor // [L, D]
	qkvW, qkvB     *ts.Tensor // [L, 3D, D], [L, 3D]: q, k and v projections fused (rows q, then k, then v)
	outW, outB     *ts.Tensor // [L, D, D], [L, D]
	norm2W, norm2B *ts.Tensor // [L, D]
	fc1W, fc1B     *ts.Tensor // [L, I, D], [L, I]
	fc2W, fc2B     *ts.Tensor // [L, D, I], [L, D]
}

// stackedLayerWeights names the per-layer weights that loadWeights stacks (keys relative to
// "…encoder.layers.N."), in layerStack's field order. "self_attn.qkv_proj.*" is not a checkpoint key:
// it is q_proj, k_proj and v_proj concatenated.
var stackedLayerWeights = [...]string{
	"layer_norm1.weight", "layer_norm1.bias",
	"self_attn.qkv_proj.weight", "self_attn.qkv_proj.bias",
	"self_attn.out_proj.weight", "self_attn.out_proj.bias",
	"layer_norm2.weight", "layer_norm2.bias",
	"mlp.fc1.weight", "mlp.fc1.bias",
	"mlp.fc2.weight", "mlp.fc2.bias",
}

// stackKey names a stacked layer weight (one of stackedLayerWeights) in the map loadWeights returns.
func stackKey(prefix, name string) string { return prefix + "encoder.layers.*." + name }

func (s *layerStack) fields() []**ts.Tensor {
	return []**ts.Tensor{&s.norm1W, &s.norm1B, &s.qkvW, &s.qkvB, &s.outW, &s.outB,
		&s.norm2W, &s.norm2B, &s.fc1W, &s.fc1B, &s.fc2W, &s.fc2B}
}

// layer returns encoder layer l with its weights as views into the stacks, recorded on t.
func (v *visionTower) layer(t *gotchutil.Tape, l int) encoderLayer {
	s, i := &v.stack, int64(l)
	sel := func(x *ts.Tensor) *ts.Tensor { return t.Select(x, 0, i) }
	eps := v.cfg.LayerNormEps
	return encoderLayer{
		norm1: layerNorm{weight: sel(s.norm1W), bias: sel(s.norm1B), eps: eps},
		norm2: layerNorm{weight: sel(s.norm2W), bias: sel(s.norm2B), eps: eps},
		attn: attention{
			qkvWeight: sel(s.qkvW), qkvBias: sel(s.qkvB),
			outWeight: sel(s.outW), outBias: sel(s.outB),
			heads: v.heads, scale: v.scale, useSDPA: v.useSDPA,
		},
		mlp: mlp{
			fc1Weight: sel(s.fc1W), fc1Bias: sel(s.fc1B),
			fc2Weight: sel(s.fc2W), fc2Bias: sel(s.fc2B),
			act: v.cfg.HiddenAct,
		},
	}
}

type layerNorm struct {
	weight, bias *ts.Tensor // [D]
	eps          float64
}

func (n layerNorm) forward(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	return t.LayerNorm(x, n.weight, n.bias, n.eps)
}

// encoderLayer is one pre-LayerNorm transformer block:
//
//	h = x + attention(layer_norm1(x));  out = h + mlp(layer_norm2(h))
type encoderLayer struct {
	norm1, norm2 layerNorm
	attn         attention
	mlp          mlp
}

// attention is multi-head self-attention with the q, k and v projections fused into one matrix
// (rows: q, then k, then v), as computed by transformers' CLIPAttention.
type attention struct {
	qkvWeight, qkvBias *ts.Tensor // [3D, D], [3D]
	outWeight, outBias *ts.Tensor // [D, D], [D]
	heads              int64
	scale              float64 // head_dim^-0.5
	useSDPA            bool
}

type mlp struct {
	fc1Weight, fc1Bias *ts.Tensor // [I, D], [I]
	fc2Weight, fc2Bias *ts.Tensor // [D, I], [D]
	act                string
}

// forward maps preprocessed pixels to the pooled output and the projected image embeddings.
// pixels: [B, C, S, S] in the compute dtype and device → pooled [B, D], embeds [B, P].
// ctx is checked between layers so a cancelled batch stops early.
func (v *visionTower) forward(ctx context.Context, t *gotchutil.Tape, pixels *ts.Tensor) (pooled, embeds *ts.Tensor) {
	x := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return v.preNorm.forward(s, v.embed(s, pixels)) })
	for i := range v.cfg.NumHiddenLayers {
		if err := ctx.Err(); err != nil {
			t.Fail("vision tower", err)
			return nil, nil
		}
		var lw gotchutil.Tape // layer i's weights: views into the stacks
		layer := v.layer(&lw, i)
		if err := lw.Err(); err != nil {
			t.Fail("vision tower", err)
		}
		if i < v.cfg.NumHiddenLayers-1 {
			x = layer.forward(t, x)
		} else {
			x = layer.forwardClass(t, x) // [B, D]
		}
		lw.Release()
		if !t.Ok() {
			t.Fail(fmt.Sprintf("encoder layer %d", i), t.Err())
			return nil, nil
		}
	}
	cls := x // after the last layer: the class token's states [B, D]
	if v.cfg.NumHiddenLayers == 0 {
		cls = t.Select(x, 1, 0)
	}
	pooled = v.postNorm.forward(t, cls)
	embeds = t.Linear(pooled, v.projection, nil)
	return pooled, embeds
}

// embed: pixels [B, C, S, S] → patch and position embeddings [B, N+1, D].
func (v *visionTower) embed(t *gotchutil.Tape, pixels *ts.Tensor) *ts.Tensor {
	d := int64(v.cfg.HiddenSize)
	patches := t.Conv2d(pixels, v.patchWeight, int64(v.cfg.PatchSize)) // [B, D, g, g]
	patches = t.Transpose(t.Flatten(patches, 2, 3), 1, 2)              // [B, N, D]
	b := int64(-1)
	if patches != nil {
		sz, err := patches.Size()
		if err != nil {
			t.Fail("embeddings", err)
			return nil
		}
		b = sz[0]
	}
	cls := t.Expand(t.Reshape(v.classEmbed, 1, 1, d), b, 1, d) // [B, 1, D]
	x := t.Cat(1, cls, patches)                                // [B, N+1, D]
	return t.Add(x, v.posEmbed)
}

// forward: x [B, T, D] → [B, T, D]. x must be on t and is dropped from it as soon as the residual
// sum has used it. Each half runs in its own scope, so that its intermediates are dropped as soon as
// it is done, and each residual sum is written into the branch's output: at most about two layer
// inputs' worth of memory besides the branch being computed.
func (l *encoderLayer) forward(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	a := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return l.attn.forward(s, l.norm1.forward(s, x)) })
	h := t.AddOut(a, x, a) // x + attention
	t.Free(a)
	t.Free(x)
	m := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return l.mlp.forward(s, l.norm2.forward(s, h)) })
	out := t.AddOut(m, h, m) // h + mlp
	t.Free(m)
	t.Free(h)
	return out
}

// forwardClass is forward for the class token only, for the last layer: the pooled output reads
// nothing else of its output. x [B, T, D] (dropped from t like forward's) → the class token's output
// [B, D]. Every token still provides keys and values; the query, the attention output, the MLP and
// the residual sums run on one row per image instead of T (the reference computes all T rows of the
// last layer and discards T−1 of them: 5.6 of ViT-L/14's 162 GFLOP per image).
func (l *encoderLayer) forwardClass(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	a := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return l.attn.forwardClass(s, l.norm1.forward(s, x)) })
	cls := t.Select(x, 1, 0) // [B, D]
	h := t.AddOut(a, cls, a) // x + attention, class token
	t.Free(a)
	t.Free(cls)
	t.Free(x)
	m := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return l.mlp.forward(s, l.norm2.forward(s, h)) })
	out := t.AddOut(m, h, m) // h + mlp
	t.Free(m)
	t.Free(h)
	return out
}

// forward: x [B, T, D] → [B, T, D].
func (a *attention) forward(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	if !t.Ok() {
		return nil
	}
	sz, err := x.Size()
	if err != nil {
		t.Fail("attention", err)
		return nil
	}
	b, n, d := sz[0], sz[1], sz[2]
	hd := d / a.heads
	qkv := t.Linear(x, a.qkvWeight, a.qkvBias)                           // [B, T, 3D]
	qkv = t.Permute(t.Reshape(qkv, b, n, 3, a.heads, hd), 2, 0, 3, 1, 4) // [3, B, H, T, hd]
	q, k, v := t.Select(qkv, 0, 0), t.Select(qkv, 0, 1), t.Select(qkv, 0, 2)
	var o *ts.Tensor // [B, H, T, hd]
	if a.useSDPA {
		o = t.SDPA(q, k, v, a.scale)
	} else {
		// Explicit attention; the softmax runs in float32 whatever the compute dtype.
		scores := t.Scale(t.Matmul(q, t.Transpose(k, 2, 3)), a.scale) // [B, H, T, T]
		o = t.Matmul(t.Softmax(scores, -1), v)
	}
	o = t.Reshape(t.Transpose(o, 1, 2), b, n, d) // [B, T, D]
	return t.Linear(o, a.outWeight, a.outBias)
}

// forwardClass is forward with the class token (position 0) as the only query: x [B, T, D] →
// [B, D]. The keys and values of all T tokens come from the fused matrix's last 2D rows, the
// class token's query from its first D rows.
func (a *attention) forwardClass(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	if !t.Ok() {
		return nil
	}
	sz, err := x.Size()
	if err != nil {
		t.Fail("attention", err)
		return nil
	}
	b, n, d := sz[0], sz[1], sz[2]
	hd := d / a.heads
	wq, bq := t.Narrow(a.qkvWeight, 0, 0, d), t.Narrow(a.qkvBias, 0, 0, d)
	wkv, bkv := t.Narrow(a.qkvWeight, 0, d, 2*d), t.Narrow(a.qkvBias, 0, d, 2*d)
	q := t.Linear(t.Select(x, 1, 0), wq, bq)                           // [B, D]
	q = t.Transpose(t.Reshape(q, b, 1, a.heads, hd), 1, 2)             // [B, H, 1, hd]
	kv := t.Linear(x, wkv, bkv)                                        // [B, T, 2D]
	kv = t.Permute(t.Reshape(kv, b, n, 2, a.heads, hd), 2, 0, 3, 1, 4) // [2, B, H, T, hd]
	k, v := t.Select(kv, 0, 0), t.Select(kv, 0, 1)
	var o *ts.Tensor // [B, H, 1, hd]
	if a.useSDPA {
		o = t.SDPA(q, k, v, a.scale)
	} else {
		scores := t.Scale(t.Matmul(q, t.Transpose(k, 2, 3)), a.scale) // [B, H, 1, T]
		o = t.Matmul(t.Softmax(scores, -1), v)
	}
	o = t.Reshape(t.Transpose(o, 1, 2), b, d) // [B, D]
	return t.Linear(o, a.outWeight, a.outBias)
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

// visionKeys lists the checkpoint keys of the vision tower and projection with their shapes.
// prefix is visionPrefix or flatVisionPrefix.
func visionKeys(cfg checkpoint.Config, prefix string) map[string][]int64 {
	v := cfg.Vision
	d, i := int64(v.HiddenSize), int64(v.IntermediateSize)
	p, c := int64(v.PatchSize), int64(v.NumChannels)
	n := int64(v.ImageSize/v.PatchSize)*int64(v.ImageSize/v.PatchSize) + 1
	keys := map[string][]int64{
		prefix + "embeddings.class_embedding":           {d},
		prefix + "embeddings.patch_embedding.weight":    {d, c, p, p},
		prefix + "embeddings.position_embedding.weight": {n, d},
		prefix + "pre_layrnorm.weight":                  {d},
		prefix + "pre_layrnorm.bias":                    {d},
		prefix + "post_layernorm.weight":                {d},
		prefix + "post_layernorm.bias":                  {d},
		"visual_projection.weight":                      {int64(cfg.ProjectionDim), d},
	}
	for l := 0; l < v.NumHiddenLayers; l++ {
		pre := fmt.Sprintf("%sencoder.layers.%d.", prefix, l)
		for _, proj := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			keys[pre+"self_attn."+proj+".weight"] = []int64{d, d}
			keys[pre+"self_attn."+proj+".bias"] = []int64{d}
		}
		for _, ln := range []string{"layer_norm1", "layer_norm2"} {
			keys[pre+ln+".weight"] = []int64{d}
			keys[pre+ln+".bias"] = []int64{d}
		}
		keys[pre+"mlp.fc1.weight"] = []int64{i, d}
		keys[pre+"mlp.fc1.bias"] = []int64{i}
		keys[pre+"mlp.fc2.weight"] = []int64{d, i}
		keys[pre+"mlp.fc2.bias"] = []int64{d}
	}
	return keys
}

// newVisionTower assembles the tower from loaded weights: the keys of visionKeys outside the encoder
// layers, and the layers' weights stacked under stackKey (as loadWeights loads them). A missing
// weight is an error recorded on t. Nothing is created.
func newVisionTower(t *gotchutil.Tape, cfg checkpoint.Config, w map[string]*ts.Tensor, prefix string, useSDPA bool) *visionTower {
	v := cfg.Vision
	eps := v.LayerNormEps
	ln := func(name string) layerNorm {
		return layerNorm{weight: w[name+".weight"], bias: w[name+".bias"], eps: eps}
	}
	tower := &visionTower{
		cfg:         v,
		patchWeight: w[prefix+"embeddings.patch_embedding.weight"],
		classEmbed:  w[prefix+"embeddings.class_embedding"],
		posEmbed:    w[prefix+"embeddings.position_embedding.weight"],
		preNorm:     ln(prefix + "pre_layrnorm"),
		postNorm:    ln(prefix + "post_layernorm"),
		projection:  w["visual_projection.weight"],
		heads:       int64(v.NumAttentionHeads),
		scale:       1 / math.Sqrt(float64(v.HiddenSize/v.NumAttentionHeads)),
		useSDPA:     useSDPA,
	}
	for i, f := range tower.stack.fields() {
		if *f = w[stackKey(prefix, stackedLayerWeights[i])]; *f == nil {
			t.Fail("vision tower", fmt.Errorf("no stacked weights %q", stackKey(prefix, stackedLayerWeights[i])))
		}
	}
	return tower
}
