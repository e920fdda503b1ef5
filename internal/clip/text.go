package clip

import (
	"context"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/gotchutil"
)

// The text tower of CLIP: transformers' CLIPTextModel (keys "text_model.…"), followed in a full
// CLIPModel checkpoint by the bias-free text projection ("text_projection.weight").
//
//	ids [B,T] ─token embedding + position embedding─▶ [B,T,D] ─L × encoder layer (Encoder, causal)─▶ [B,T,D]
//	─pick the end-of-text position─▶ [B,D] ─final_layer_norm─▶ pooled [B,D] ─text_projection─▶ [B,P]
//
// D = hidden size, T = context length (77), P = projection dim. Every method here runs on the
// model's worker thread and records what it creates on the caller's tape.

// Key prefixes of the text tower: CLIPModel checkpoints and hub text_encoder/ folders use
// "text_model."; a CLIPTextModel saved by transformers 5 has no prefix.
const (
	TextPrefix        = "text_model."
	BareTextPrefix    = ""
	KeyTextProjection = "text_projection.weight"
)

// TextTransformer holds the weights of the text tower and, when the checkpoint has one, the projection,
// on the compute device and dtype.
type TextTransformer struct {
	cfg TextConfig

	tokenEmbed *ts.Tensor // [V, D]
	posEmbed   *ts.Tensor // [M, D]
	enc        *Encoder   // L causal encoder layers
	finalNorm  LayerNorm
	projection *ts.Tensor // [P, D]; nil without a projection

	device gotch.Device
}

// Forward maps token ids to the pooled output and, with a projection, the projected text
// embeddings. ids: [B, T] int64 on the CPU; pool[b] is the position pooled for row b (see
// [PoolPositions]) → pooled [B, D], embeds [B, P] (nil without a projection), in the compute dtype.
// ctx is checked between layers.
func (m *TextTransformer) Forward(ctx context.Context, t *gotchutil.Tape, ids *ts.Tensor, b, n int64, pool []int64) (pooled, embeds *ts.Tensor) {
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
func (m *TextTransformer) embed(t *gotchutil.Tape, ids *ts.Tensor, b, n int64) *ts.Tensor {
	flat := t.ToDevice(t.Reshape(ids, b*n), m.device, gotch.Int64)
	tok := t.Reshape(t.IndexSelect(m.tokenEmbed, 0, flat), b, n, -1) // [B, T, D]
	pos := t.Narrow(m.posEmbed, 0, 0, n)                             // [T, D]
	return t.Add(tok, pos)
}

// PoolPositions returns, for each row of ids ([B][T]), the position CLIPTextTransformer pools:
// with eosTokenID == 2 (legacy configs) the first position of the row's largest id (torch.argmax);
// otherwise the first position holding eosTokenID, or 0 when none does (argmax of an all-zero row).
func PoolPositions(ids [][]int64, eosTokenID int) []int64 {
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

// isTextKey reports whether a checkpoint key belongs to the text tower's namespace under prefix
// (for the bare layout: the top-level modules of a CLIPTextModel).
func isTextKey(name, prefix string) bool {
	if prefix != BareTextPrefix {
		return strings.HasPrefix(name, prefix)
	}
	for _, p := range []string{"embeddings.", "encoder.", "final_layer_norm."} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// newText returns the text tower of c, attending with SDPA or not and computing on device, and the
// spec of its weights under prefix (TextPrefix or BareTextPrefix), with the text projection [projDim, D]
// (top level) when projDim > 0: loading the spec binds every weight.
func newText(c TextConfig, prefix string, projDim int, sdpa bool, device gotch.Device) (*TextTransformer, Spec) {
	m := &TextTransformer{cfg: c, enc: newEncoder(c.EncoderConfig, true, sdpa), device: device}
	m.finalNorm.Eps = c.LayerNormEps
	d := int64(c.HiddenSize)
	s := NewSpec()
	tower := s.At(prefix)
	emb := tower.Sub("embeddings")
	emb.Tensor(&m.tokenEmbed, "token_embedding.weight", int64(c.VocabSize), d)
	emb.Tensor(&m.posEmbed, "position_embedding.weight", int64(c.MaxPositionEmbeddings), d)
	m.enc.spec(tower.Sub("encoder"))
	m.finalNorm.spec(tower.Sub("final_layer_norm"), d)
	if projDim > 0 {
		s.Tensor(&m.projection, KeyTextProjection, int64(projDim), d)
	}
	return m, s
}
