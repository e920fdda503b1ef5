package clip

import (
	"context"

	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/gotchutil"
)

// The vision tower of CLIP as StableDiffusionSafetyChecker holds it: transformers' CLIPVisionModel
// under the key prefix "vision_model.vision_model.", followed by the bias-free visual projection.
//
//	pixels [B,3,S,S] ─patch conv─▶ [B,N,D] ─prepend CLS, add positions─▶ [B,N+1,D] ─pre_layrnorm─▶
//	L × encoder layer (Encoder) ─▶ post_layernorm(CLS) = pooled [B,D] ─visual_projection─▶ image_embeds [B,P]
//
// D = hidden size, N = (S/patch)², P = projection dim. Every method here runs on the model's worker
// thread and records what it creates on the caller's tape.

// Key prefixes of the vision tower: diffusers' published checkpoints nest transformers'
// CLIPVisionModel (vision_model.vision_model.…); some exports flatten it to vision_model.….
const (
	VisionPrefix     = "vision_model.vision_model."
	FlatVisionPrefix = "vision_model."
)

// VisionTransformer holds the weights of the vision tower and projection, on the compute device and dtype.
type VisionTransformer struct {
	cfg VisionConfig

	patchWeight *ts.Tensor // [D, C, p, p]
	classEmbed  *ts.Tensor // [D]
	posEmbed    *ts.Tensor // [N+1, D]
	preNorm     LayerNorm
	enc         *Encoder // L non-causal encoder layers, the last for the class token only
	postNorm    LayerNorm
	projection  *ts.Tensor // [P, D]
}

// Forward maps preprocessed pixels to the pooled output and the projected image embeddings.
// pixels: [B, C, S, S] in the compute dtype and device → pooled [B, D], embeds [B, P].
// ctx is checked between layers so a cancelled batch stops early.
func (v *VisionTransformer) Forward(ctx context.Context, t *gotchutil.Tape, pixels *ts.Tensor) (pooled, embeds *ts.Tensor) {
	x := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return v.preNorm.Forward(s, v.embed(s, pixels)) })
	cls := v.enc.Forward(ctx, t, x, true) // the class token's states after the last layer [B, D]
	if !t.Ok() {
		return nil, nil
	}
	pooled = v.postNorm.Forward(t, cls)
	embeds = t.Linear(pooled, v.projection, nil)
	return pooled, embeds
}

// embed: pixels [B, C, S, S] → patch and position embeddings [B, N+1, D].
func (v *VisionTransformer) embed(t *gotchutil.Tape, pixels *ts.Tensor) *ts.Tensor {
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

// newVision returns the vision tower of cfg, attending with SDPA or not, and the spec of its weights
// under prefix (VisionPrefix or FlatVisionPrefix; the projection is at the top level): loading the
// spec binds every weight.
func newVision(cfg Config, prefix string, sdpa bool) (*VisionTransformer, Spec) {
	c := cfg.Vision
	v := &VisionTransformer{cfg: c, enc: newEncoder(c.EncoderConfig, false, sdpa)}
	v.preNorm.Eps, v.postNorm.Eps = c.LayerNormEps, c.LayerNormEps
	d := int64(c.HiddenSize)
	p, ch := int64(c.PatchSize), int64(c.NumChannels)
	s := NewSpec()
	tower := s.At(prefix)
	emb := tower.Sub("embeddings")
	emb.Tensor(&v.classEmbed, "class_embedding", d)
	emb.Tensor(&v.patchWeight, "patch_embedding.weight", d, ch, p, p)
	emb.Tensor(&v.posEmbed, "position_embedding.weight", int64(c.NumPatches()+1), d)
	v.preNorm.spec(tower.Sub("pre_layrnorm"), d)
	v.enc.spec(tower.Sub("encoder"))
	v.postNorm.spec(tower.Sub("post_layernorm"), d)
	s.Tensor(&v.projection, "visual_projection.weight", int64(cfg.ProjectionDim), d)
	return v, s
}

// VisionKeys lists the checkpoint keys of the vision tower and projection under prefix
// (VisionPrefix or FlatVisionPrefix) with their shapes, from the tower's spec.
func VisionKeys(cfg Config, prefix string) map[string][]int64 {
	_, s := newVision(cfg, prefix, false)
	return Keys(s.Params())
}
