package safety

import (
	"context"
	"fmt"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/clip"
	"github.com/sdsafety/safety/internal/gotchutil"
)

// The text tower of CLIP: transformers' CLIPTextModel (keys "text_model.…"), followed in a full
// CLIPModel checkpoint by the bias-free text projection ("text_projection.weight").
//
//	ids [B,T] ─token embedding + position embedding─▶ [B,T,D] ─L × encoder layer (clip.Encoder, causal)─▶ [B,T,D]
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
	cfg clip.TextConfig

	tokenEmbed *ts.Tensor    // [V, D]
	posEmbed   *ts.Tensor    // [M, D]
	enc        *clip.Encoder // L causal encoder layers
	finalNorm  clip.LayerNorm
	projection *ts.Tensor // [P, D]; nil without a projection

	device gotch.Device
}

// forward maps token ids to the pooled output and, with a projection, the projected text
// embeddings. ids: [B, T] int64 on the CPU; pool[b] is the position pooled for row b (see
// [poolPositions]) → pooled [B, D], embeds [B, P] (nil without a projection), in the compute dtype.
// ctx is checked between layers.
func (m *textTower) forward(ctx context.Context, t *gotchutil.Tape, ids *ts.Tensor, b, n int64, pool []int64) (pooled, embeds *ts.Tensor) {
	x := t.Scope(func(s *gotchutil.Tape) *ts.Tensor { return m.embed(s, ids, b, n) })
	x = m.enc.Forward(ctx, t, x, false) // [B, T, D]
	if !t.Ok() {
		return nil, nil
	}
	// The end-of-text rows of the [B·T, D] states; the final LayerNorm is per position, so it can
	// run on those rows only.
	flat := make([]int64, b)
	for i := range flat {
		flat[i] = int64(i)*n + pool[i]
	}
	index := t.ToDevice(t.Int64(flat, b), m.device, gotch.Int64)
	rows := t.IndexSelect(t.Reshape(x, b*n, -1), 0, index) // [B, D]
	pooled = m.finalNorm.Forward(t, rows)
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
func textKeys(c clip.TextConfig, prefix string) map[string][]int64 {
	d := int64(c.HiddenSize)
	keys := map[string][]int64{
		prefix + "embeddings.token_embedding.weight":    {int64(c.VocabSize), d},
		prefix + "embeddings.position_embedding.weight": {int64(c.MaxPositionEmbeddings), d},
		prefix + "final_layer_norm.weight":              {d},
		prefix + "final_layer_norm.bias":                {d},
	}
	clip.AddLayerKeys(keys, c.EncoderConfig, prefix)
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
func loadTextWeights(t *gotchutil.Tape, ck checkpoint.Checkpoint, cfg clip.TextModelConfig,
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
	belongs := func(name string) bool { return isTextKey(name, prefix) && name != prefix+"embeddings.position_ids" }
	if err := keysError(ck, checkKeys(ck, belongs, want)); err != nil {
		return nil, "", false, err
	}
	groups := clip.Groups(cfg.Text.NumHiddenLayers, prefix, want)
	w := make(map[string]*ts.Tensor, len(groups))
	for _, g := range groups {
		x, err := loadGroup(ck, g, device, dtype)
		if err != nil {
			return nil, "", false, err
		}
		t.Record(g.Key, x, nil)
		w[g.Key] = x
	}
	return w, prefix, projected, nil
}

func has(ck checkpoint.Checkpoint, name string) bool {
	_, ok := ck.Info(name)
	return ok
}

// newTextTower assembles the tower from loaded weights: the keys of textKeys outside the encoder
// layers (plus the projection when present), and the layers' weights stacked under clip.StackKey (as
// loadTextWeights loads them). A missing weight is an error recorded on t. Nothing is created.
func newTextTower(t *gotchutil.Tape, c clip.TextConfig, w map[string]*ts.Tensor, prefix string, useSDPA bool,
	device gotch.Device) *textTower {
	return &textTower{
		cfg:        c,
		tokenEmbed: w[prefix+"embeddings.token_embedding.weight"],
		posEmbed:   w[prefix+"embeddings.position_embedding.weight"],
		enc:        clip.NewEncoder(t, c.EncoderConfig, w, prefix, true, useSDPA),
		finalNorm: clip.LayerNorm{Weight: w[prefix+"final_layer_norm.weight"], Bias: w[prefix+"final_layer_norm.bias"],
			Eps: c.LayerNormEps},
		projection: w[keyTextProjection],
		device:     device,
	}
}
