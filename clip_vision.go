package safety

import (
	"context"
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
	layers      []encoderLayer
	postNorm    layerNorm
	projection  *ts.Tensor // [P, D]

	useSDPA bool // scaled_dot_product_attention is available in this libtorch
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
	x := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return v.embed(s, pixels) })
	x = v.preNorm.forward(t, x)
	for i := range v.layers {
		if err := ctx.Err(); err != nil {
			t.Fail("vision tower", err)
			return nil, nil
		}
		prev := x
		x = t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return v.layers[i].forward(s, prev) })
		t.Free(prev)
		if !t.Ok() {
			t.Fail(fmt.Sprintf("encoder layer %d", i), t.Err())
			return nil, nil
		}
	}
	cls := t.Select(x, 1, 0) // [B, D]
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

// forward: x [B, T, D] → [B, T, D].
func (l *encoderLayer) forward(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	h := t.Add(x, l.attn.forward(t, l.norm1.forward(t, x)))
	return t.Add(h, l.mlp.forward(t, l.norm2.forward(t, h)))
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

// forward: x [B, T, D] → [B, T, D].
func (m *mlp) forward(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	h := t.Linear(x, m.fc1Weight, m.fc1Bias)
	h = activation(t, m.act, h)
	return t.Linear(h, m.fc2Weight, m.fc2Bias)
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

// newVisionTower assembles the tower from loaded weights (keys as in visionKeys), fusing each layer's
// q, k and v projections. Tensors it creates are recorded on t; the caller keeps them.
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
		useSDPA:     useSDPA,
	}
	heads := int64(v.NumAttentionHeads)
	scale := 1 / math.Sqrt(float64(v.HiddenSize/v.NumAttentionHeads))
	for l := 0; l < v.NumHiddenLayers; l++ {
		pre := fmt.Sprintf("%sencoder.layers.%d.", prefix, l)
		att := pre + "self_attn."
		qkvW := t.Cat(0, w[att+"q_proj.weight"], w[att+"k_proj.weight"], w[att+"v_proj.weight"])
		qkvB := t.Cat(0, w[att+"q_proj.bias"], w[att+"k_proj.bias"], w[att+"v_proj.bias"])
		tower.layers = append(tower.layers, encoderLayer{
			norm1: ln(pre + "layer_norm1"),
			norm2: ln(pre + "layer_norm2"),
			attn: attention{
				qkvWeight: qkvW, qkvBias: qkvB,
				outWeight: w[att+"out_proj.weight"], outBias: w[att+"out_proj.bias"],
				heads: heads, scale: scale, useSDPA: useSDPA,
			},
			mlp: mlp{
				fc1Weight: w[pre+"mlp.fc1.weight"], fc1Bias: w[pre+"mlp.fc1.bias"],
				fc2Weight: w[pre+"mlp.fc2.weight"], fc2Bias: w[pre+"mlp.fc2.bias"],
				act: v.HiddenAct,
			},
		})
	}
	return tower
}
