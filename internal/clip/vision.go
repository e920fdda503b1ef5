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

// VisionKeys lists the checkpoint keys of the vision tower and projection with their shapes.
// prefix is VisionPrefix or FlatVisionPrefix.
func VisionKeys(cfg Config, prefix string) map[string][]int64 {
	v := cfg.Vision
	d := int64(v.HiddenSize)
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
	AddLayerKeys(keys, v.EncoderConfig, prefix)
	return keys
}

// NewVisionTransformer assembles the tower from loaded weights: the keys of VisionKeys outside the encoder
// layers, and the layers' weights stacked under StackKey (as the loader loads them). A missing
// weight is an error recorded on t. Nothing is created.
func NewVisionTransformer(t *gotchutil.Tape, cfg Config, w map[string]*ts.Tensor, prefix string, useSDPA bool) *VisionTransformer {
	v := cfg.Vision
	ln := func(name string) LayerNorm {
		return LayerNorm{Weight: w[name+".weight"], Bias: w[name+".bias"], Eps: v.LayerNormEps}
	}
	return &VisionTransformer{
		cfg:         v,
		patchWeight: w[prefix+"embeddings.patch_embedding.weight"],
		classEmbed:  w[prefix+"embeddings.class_embedding"],
		posEmbed:    w[prefix+"embeddings.position_embedding.weight"],
		preNorm:     ln(prefix + "pre_layrnorm"),
		enc:         NewEncoder(t, v.EncoderConfig, w, prefix, false, useSDPA),
		postNorm:    ln(prefix + "post_layernorm"),
		projection:  w["visual_projection.weight"],
	}
}
