package safety

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/gotchutil"
)

// The text tower of CLIP: transformers' CLIPTextModel (keys "text_model.…"), followed in a full
// CLIPModel checkpoint by the bias-free text projection ("text_projection.weight").
//
//	ids [B,T] ─token embedding + position embedding─▶ [B,T,D] ─L × textLayer (causal)─▶ [B,T,D]
//	─pick the end-of-text position─▶ [B,D] ─final_layer_norm─▶ pooled [B,D] ─text_projection─▶ [B,P]
//
// D = hidden size, T = context length (77), P = projection dim. Every method here runs on the
// TextEncoder's worker thread and records what it creates on the caller's tape.

// Key prefixes of the text tower: CLIPModel checkpoints and hub text_encoder/ folders use
// "text_model."; a CLIPTextModel saved by transformers 5 has no prefix.
const (
	textPrefix        = "text_model."
	bareTextPrefix    = ""
	keyTextProjection = "text_projection.weight"
)

// textTower holds the weights of the text tower and, when the checkpoint has one, the projection,
// on the compute device and dtype.
type textTower struct {
	cfg checkpoint.TextConfig

	tokenEmbed *ts.Tensor // [V, D]
	posEmbed   *ts.Tensor // [M, D]
	layers     []textLayer
	finalNorm  layerNorm
	projection *ts.Tensor // [P, D]; nil without a projection

	device gotch.Device
	dtype  gotch.DType
}

// textLayer is one pre-LayerNorm transformer block with causal self-attention:
//
//	h = x + causal_attention(layer_norm1(x));  out = h + mlp(layer_norm2(h))
type textLayer struct {
	norm1, norm2 layerNorm
	attn         causalAttention
	mlp          mlp
}

// causalAttention is multi-head self-attention in which position i sees positions 0..i, with the
// q, k and v projections fused into one matrix (rows: q, then k, then v), as transformers'
// CLIPAttention computes it for the text model.
type causalAttention struct {
	qkvWeight, qkvBias *ts.Tensor // [3D, D], [3D]
	outWeight, outBias *ts.Tensor // [D, D], [D]
	heads              int64
	scale              float64 // head_dim^-0.5
	useSDPA            bool    // scaled_dot_product_attention with is_causal; else explicit with a −Inf mask
}

// forward maps token ids to the pooled output and, with a projection, the projected text
// embeddings. ids: [B, T] int64 on the CPU; pool[b] is the position pooled for row b (see
// [poolPositions]) → pooled [B, D], embeds [B, P] (nil without a projection), in the compute dtype.
// ctx is checked between layers.
func (m *textTower) forward(ctx context.Context, t *gotchutil.Tape, ids *ts.Tensor, b, n int64, pool []int64) (pooled, embeds *ts.Tensor) {
	x := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return m.embed(s, ids, b, n) })
	var mask *ts.Tensor
	if len(m.layers) > 0 && !m.layers[0].attn.useSDPA {
		mask = t.CausalMask(n, m.device, m.dtype)
	}
	for i := range m.layers {
		if err := ctx.Err(); err != nil {
			t.Fail("text tower", err)
			return nil, nil
		}
		prev := x
		x = t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return m.layers[i].forward(s, prev, mask) })
		t.Free(prev)
		if !t.Ok() {
			t.Fail(fmt.Sprintf("text encoder layer %d", i), t.Err())
			return nil, nil
		}
	}
	// The end-of-text rows of the [B·T, D] states; the final LayerNorm is per position, so it can
	// run on those rows only.
	flat := make([]int64, b)
	for i := range flat {
		flat[i] = int64(i)*n + pool[i]
	}
	index := t.ToDevice(t.Int64(flat, b), m.device, gotch.Int64)
	rows := t.IndexSelect(t.Reshape(x, b*n, -1), 0, index) // [B, D]
	pooled = m.finalNorm.forward(t, rows)
	if m.projection != nil {
		embeds = t.Linear(pooled, m.projection, nil)
	}
	return pooled, embeds
}

// embed: ids [B, T] → token + position embeddings [B, T, D].
func (m *textTower) embed(t *gotchutil.Tape, ids *ts.Tensor, b, n int64) *ts.Tensor {
	flat := t.ToDevice(t.Reshape(ids, b*n), m.device, gotch.Int64)
	tok := t.Reshape(t.IndexSelect(m.tokenEmbed, 0, flat), b, n, -1) // [B, T, D]
	pos := t.Narrow(m.posEmbed, 0, 0, n)                             // [T, D]
	return t.Add(tok, pos)
}

// forward: x [B, T, D] → [B, T, D]. mask is the additive causal mask [T, T] (nil with SDPA).
func (l *textLayer) forward(t *gotchutil.Tape, x, mask *ts.Tensor) *ts.Tensor {
	h := t.Add(x, l.attn.forward(t, l.norm1.forward(t, x), mask))
	return t.Add(h, l.mlp.forward(t, l.norm2.forward(t, h)))
}

// forward: x [B, T, D] → [B, T, D].
func (a *causalAttention) forward(t *gotchutil.Tape, x, mask *ts.Tensor) *ts.Tensor {
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
		o = t.SDPACausal(q, k, v, a.scale)
	} else {
		// Explicit attention: scores + mask, softmax in float32 whatever the compute dtype.
		scores := t.Add(t.Scale(t.Matmul(q, t.Transpose(k, 2, 3)), a.scale), mask) // [B, H, T, T]
		o = t.Matmul(t.Softmax(scores, -1), v)
	}
	o = t.Reshape(t.Transpose(o, 1, 2), b, n, d) // [B, T, D]
	return t.Linear(o, a.outWeight, a.outBias)
}

// poolPositions returns, for each row of ids ([B][T]), the position CLIPTextTransformer pools:
// with eosTokenID == 2 (legacy configs) the first position of the row's largest id (torch.argmax);
// otherwise the first position holding eosTokenID, or 0 when none does (argmax of an all-zero row).
func poolPositions(ids [][]int64, eosTokenID int) []int64 {
	out := make([]int64, len(ids))
	for r, row := range ids {
		best := 0
		for i, id := range row {
			if eosTokenID == 2 {
				if id > row[best] {
					best = i
				}
			} else if id == int64(eosTokenID) {
				best = i
				break
			}
		}
		out[r] = int64(best)
	}
	return out
}

// textKeys lists the checkpoint keys of the text tower with their shapes. prefix is textPrefix or
// bareTextPrefix; the projection is not included.
func textKeys(c checkpoint.TextConfig, prefix string) map[string][]int64 {
	d, i := int64(c.HiddenSize), int64(c.IntermediateSize)
	keys := map[string][]int64{
		prefix + "embeddings.token_embedding.weight":    {int64(c.VocabSize), d},
		prefix + "embeddings.position_embedding.weight": {int64(c.MaxPositionEmbeddings), d},
		prefix + "final_layer_norm.weight":              {d},
		prefix + "final_layer_norm.bias":                {d},
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
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

// isTextKey reports whether a checkpoint key belongs to the text tower's namespace under prefix
// (for the bare layout: the top-level modules of a CLIPTextModel).
func isTextKey(name, prefix string) bool {
	if prefix != bareTextPrefix {
		return strings.HasPrefix(name, prefix)
	}
	for _, p := range []string{"embeddings.", "encoder.", "final_layer_norm."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// loadTextWeights finds the text tower in ck, validates its keys and shapes against cfg and loads
// it one tensor at a time onto device in dtype, recording the tensors on t. It returns the weights
// by key, the key prefix and whether the checkpoint has a text projection [P, D] (P = cfg.ProjectionDim).
func loadTextWeights(t *gotchutil.Tape, ck checkpoint.Checkpoint, cfg checkpoint.TextModelConfig,
	device gotch.Device, dtype gotch.DType) (map[string]*ts.Tensor, string, bool, error) {
	var prefix string
	switch {
	case has(ck, textPrefix+"embeddings.token_embedding.weight"):
		prefix = textPrefix
	case has(ck, bareTextPrefix+"embeddings.token_embedding.weight"):
		prefix = bareTextPrefix
	case has(ck, visionPrefix+"embeddings.class_embedding") || has(ck, keyConceptEmbeds):
		return nil, "", false, fmt.Errorf("%w: %s holds a safety checker (vision tower and concepts only), not a CLIP "+
			"text tower; load the CLIP model it comes from (openai/clip-vit-large-patch14)", ErrCheckpoint, ck.Path())
	default:
		return nil, "", false, fmt.Errorf("%w: %s: no CLIP text tower (no %q)", ErrCheckpoint, ck.Path(),
			textPrefix+"embeddings.token_embedding.weight")
	}
	if err := checkLayerCount(ck, prefix, cfg.Text.NumHiddenLayers); err != nil {
		return nil, "", false, err
	}
	want := textKeys(cfg.Text, prefix)
	_, projected := ck.Info(keyTextProjection)
	if projected {
		want[keyTextProjection] = []int64{int64(cfg.ProjectionDim), int64(cfg.Text.HiddenSize)}
	}
	var problems []string
	for _, name := range ck.Names() {
		if _, ok := want[name]; !ok && isTextKey(name, prefix) && name != prefix+"embeddings.position_ids" {
			problems = append(problems, fmt.Sprintf("unexpected tensor %q", name))
		}
	}
	for _, name := range sortedKeys(want) {
		shape := want[name]
		info, ok := ck.Info(name)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("missing tensor %q (want shape %v)", name, shape))
		case !slices.Equal(info.Shape, shape):
			problems = append(problems, fmt.Sprintf("tensor %q has shape %v, want %v", name, info.Shape, shape))
		case !info.DType.IsFloat():
			problems = append(problems, fmt.Sprintf("tensor %q has dtype %s, want a float type", name, info.DType))
		}
	}
	if len(problems) > 0 {
		if len(problems) > 8 {
			problems = append(problems[:8], fmt.Sprintf("and %d more", len(problems)-8))
		}
		return nil, "", false, fmt.Errorf("%w: %s: %s", ErrCheckpoint, ck.Path(), strings.Join(problems, "; "))
	}
	w := make(map[string]*ts.Tensor, len(want))
	for _, name := range sortedKeys(want) {
		x, err := loadTensor(ck, name, device, dtype)
		if err != nil {
			return nil, "", false, err
		}
		t.Record(name, x, nil)
		w[name] = x
	}
	return w, prefix, projected, nil
}

func has(ck checkpoint.Checkpoint, name string) bool {
	_, ok := ck.Info(name)
	return ok
}

// newTextTower assembles the tower from loaded weights (keys as in textKeys, plus the projection
// when present), fusing each layer's q, k and v projections. Tensors it creates are recorded on t.
func newTextTower(t *gotchutil.Tape, c checkpoint.TextConfig, w map[string]*ts.Tensor, prefix string, useSDPA bool,
	device gotch.Device, dtype gotch.DType) *textTower {
	ln := func(name string) layerNorm {
		return layerNorm{weight: w[name+".weight"], bias: w[name+".bias"], eps: c.LayerNormEps}
	}
	tower := &textTower{
		cfg:        c,
		tokenEmbed: w[prefix+"embeddings.token_embedding.weight"],
		posEmbed:   w[prefix+"embeddings.position_embedding.weight"],
		finalNorm:  ln(prefix + "final_layer_norm"),
		projection: w[keyTextProjection],
		device:     device,
		dtype:      dtype,
	}
	heads := int64(c.NumAttentionHeads)
	scale := 1 / math.Sqrt(float64(c.HeadDim()))
	for l := 0; l < c.NumHiddenLayers; l++ {
		pre := fmt.Sprintf("%sencoder.layers.%d.", prefix, l)
		att := pre + "self_attn."
		tower.layers = append(tower.layers, textLayer{
			norm1: ln(pre + "layer_norm1"),
			norm2: ln(pre + "layer_norm2"),
			attn: causalAttention{
				qkvWeight: t.Cat(0, w[att+"q_proj.weight"], w[att+"k_proj.weight"], w[att+"v_proj.weight"]),
				qkvBias:   t.Cat(0, w[att+"q_proj.bias"], w[att+"k_proj.bias"], w[att+"v_proj.bias"]),
				outWeight: w[att+"out_proj.weight"], outBias: w[att+"out_proj.bias"],
				heads: heads, scale: scale, useSDPA: useSDPA,
			},
			mlp: mlp{
				fc1Weight: w[pre+"mlp.fc1.weight"], fc1Bias: w[pre+"mlp.fc1.bias"],
				fc2Weight: w[pre+"mlp.fc2.weight"], fc2Bias: w[pre+"mlp.fc2.bias"],
				act: c.HiddenAct,
			},
		})
	}
	return tower
}
