package safety

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/clip"
	"github.com/sdsafety/safety/internal/cliptok"
	"github.com/sdsafety/safety/internal/gotchutil"
)

var (
	// ErrNoProjection means the text encoder has no text projection (a pipeline's text_encoder/ is a
	// CLIPTextModel without one), so it cannot give embeddings in the image embedding space that
	// concepts are compared in. Use the full CLIP checkpoint (openai/clip-vit-large-patch14 for the
	// published safety checker), whose text_projection.weight maps text into that space.
	ErrNoProjection = errors.New("safety: text encoder has no text projection: projected concept embeddings need the full CLIP checkpoint (text_projection.weight)")
	// ErrNoTextEncoder is returned by [Checker.AddConcept] when no text encoder is set.
	ErrNoTextEncoder = errors.New("safety: no text encoder set (Checker.SetTextEncoder)")
	// ErrTextTooLong is returned by [Checker.AddConcept] for a text longer than the model's context
	// (75 tokens between the start and end tokens for CLIP): the model would see a truncated text.
	ErrTextTooLong = errors.New("safety: text longer than the text model's context")
)

// TextEncoder is CLIP's text tower and tokenizer on libtorch: it maps texts to embeddings in the
// space of the checker's image embeddings (with the CLIP checkpoint the checker's vision tower comes
// from: openai/clip-vit-large-patch14 for CompVis/stable-diffusion-safety-checker).
//
// A TextEncoder is safe for concurrent use; model calls are serialised on one OS thread. Close
// releases its tensors; afterwards its methods return [ErrClosed].
type TextEncoder struct {
	rt    *gotchutil.Runtime // the model thread and the tensors the encoder owns
	tower *clip.TextTransformer
	tok   *cliptok.Tokenizer
	info  TextInfo
	opts  options
}

// TextInfo describes a loaded TextEncoder.
type TextInfo struct {
	Dir          string     // model directory
	WeightsFile  string     // the weights file read
	TokenizerDir string     // where the tokenizer files were read
	Device       Device     // DeviceCPU or DeviceCUDA
	DType        DType      // compute precision
	Text         TextConfig // the text tower's configuration
	// ProjectionDim is the width of the projected embeddings, 0 when the checkpoint has no text
	// projection (then only pooled outputs are available and Embed returns ErrNoProjection).
	ProjectionDim int
	// ContextLength is the number of token positions (max_position_embeddings, 77); texts longer
	// than ContextLength−2 tokens are truncated.
	ContextLength int
	SDPA          bool   // attention uses scaled_dot_product_attention (is_causal)
	Libtorch      string // libtorch version, "" when unknown
	// MappedBytes and CopiedBytes are the bytes of the text tower's weights held as views of the
	// memory-mapped weights file and as copies (see [WithMappedWeights]).
	MappedBytes, CopiedBytes int64
}

// TextEmbedding is the result for one text.
type TextEmbedding struct {
	// TextEmbeds is the projected embedding [P] (CLIPModel.get_text_features), nil without a
	// projection.
	TextEmbeds []float32 `json:"text_embeds,omitempty"`
	// PooledOutput is the text tower's pooled output [D] (after the final LayerNorm).
	PooledOutput []float32 `json:"pooled_output"`
	// InputIDs are the token ids the model saw, from <|startoftext|> to <|endoftext|> (the padding
	// to ContextLength is not included).
	InputIDs []int `json:"input_ids"`
	// Tokens is the number of tokens of the text (without start and end) before truncation.
	Tokens int `json:"tokens"`
	// Truncated reports that the text had more than ContextLength−2 tokens and was cut.
	Truncated bool `json:"truncated"`
}

// WithTokenizerDir makes [LoadTextEncoder] read the tokenizer (vocab.json + merges.txt or
// tokenizer.json, with tokenizer_config.json) from dir instead of looking for it next to the model.
func WithTokenizerDir(dir string) Option {
	return func(o *options) error {
		o.tokenizerDir = dir
		return nil
	}
}

// LoadTextEncoder reads a CLIP text tower and its tokenizer from dir, either
//
//   - a CLIP model in the layout of openai/clip-vit-large-patch14: config.json (a CLIPConfig with
//     text_config and projection_dim), one weights file with text_model.* and
//     text_projection.weight (its vision tower is not loaded), and the tokenizer files; or
//   - a Stable Diffusion pipeline's text_encoder/ folder: config.json (a CLIPTextConfig) and
//     text_model.* weights without a projection; the tokenizer then comes from the sibling
//     tokenizer/ folder. Such an encoder gives pooled outputs only: projected embeddings, and so
//     concepts, return [ErrNoProjection].
//
// The tokenizer is read from WithTokenizerDir, else dir, else dir/../tokenizer. Weights files are
// found as for [Load]. Of the options, WithDevice, WithDType, WithBatchSize and WithThreads apply;
// device, dtype and attention are decided as for Load (a dtype this libtorch cannot run the text
// tower in on that device, such as float16 on libtorch 2.1's CPU, is refused with [ErrUnsupported]).
func LoadTextEncoder(dir string, opts ...Option) (*TextEncoder, error) {
	o, cfg, err := openConfig(dir, opts, clip.LoadTextConfig)
	if err != nil {
		return nil, err
	}
	tokDir := o.tokenizerDir
	if tokDir == "" {
		tokDir = dir
		if !cliptok.HasFiles(dir) {
			if sib := filepath.Join(filepath.Dir(filepath.Clean(dir)), "tokenizer"); cliptok.HasFiles(sib) {
				tokDir = sib
			} else {
				return nil, fmt.Errorf("%w: no tokenizer files (vocab.json and merges.txt, or tokenizer.json) in %s or %s; "+
					"use WithTokenizerDir", ErrCheckpoint, dir, sib)
			}
		}
	}
	tok, err := cliptok.Load(tokDir)
	if err != nil {
		return nil, fmt.Errorf("%w: tokenizer: %v", ErrCheckpoint, err)
	}
	if n := tok.VocabSize(); n > cfg.Text.VocabSize {
		return nil, fmt.Errorf("%w: the tokenizer in %s has %d ids but the model's vocab_size is %d", ErrCheckpoint,
			tokDir, n, cfg.Text.VocabSize)
	}
	weights, rt, err := startModel(dir, o)
	if err != nil {
		return nil, err
	}
	e := &TextEncoder{rt: rt, tok: tok, opts: o}
	e.info = TextInfo{Dir: dir, WeightsFile: weights, TokenizerDir: tokDir, DType: o.dtype, Text: cfg.Text,
		ContextLength: cfg.Text.MaxPositionEmbeddings,
		Libtorch:      gotchutil.Build().Libtorch}
	if err := loadModel(rt, weights, o, false, func(p placement, ck checkpoint.Checkpoint) error {
		return e.load(p, cfg, ck)
	}); err != nil {
		return nil, err
	}
	return e, nil
}

// load runs on the worker thread: it loads the text tower of ck placed as p.
func (e *TextEncoder) load(p placement, cfg clip.TextModelConfig, ck checkpoint.Checkpoint) error {
	e.info.Device, e.info.SDPA = p.where, p.sdpa
	l := p.loading(e.rt, e.opts)
	tower, projected, err := clip.LoadText(&e.rt.Owned, ck, cfg, l)
	e.info.MappedBytes, e.info.CopiedBytes = l.MappedBytes, l.CopiedBytes
	if err != nil {
		return err
	}
	if projected {
		e.info.ProjectionDim = cfg.ProjectionDim
	}
	e.tower = tower
	return nil
}

// Info describes the loaded text encoder.
func (e *TextEncoder) Info() TextInfo { return e.info }

// Close releases every tensor and stops the model thread. Close is idempotent.
func (e *TextEncoder) Close() error {
	return e.rt.Close()
}

// Tokenize returns the token ids the model sees for text: <|startoftext|>, at most
// ContextLength−2 tokens, <|endoftext|> — transformers' CLIPTokenizer with truncation — plus the
// token count before truncation and whether the text was truncated.
func (e *TextEncoder) Tokenize(text string) (ids []int, tokens int, truncated bool) {
	enc := e.tok.Encode(text, e.info.ContextLength)
	return enc.IDs, enc.Tokens, enc.Truncated
}

// Embed returns the projected embedding [P] of each text (CLIPModel.get_text_features on the
// prompt tokenised as diffusers does: padded to the context, truncated), in the space of the
// image embeddings of a checker built on the same CLIP. Texts longer than the context are
// truncated silently, as transformers does; [TextEncoder.EmbedTexts] reports it. Without a
// projection it returns [ErrNoProjection].
func (e *TextEncoder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if e.info.ProjectionDim == 0 {
		return nil, ErrNoProjection
	}
	res, err := e.EmbedTexts(ctx, texts)
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(res))
	for i, r := range res {
		out[i] = r.TextEmbeds
	}
	return out, nil
}

// EmbedTexts returns, for each text in order, the projected embedding (when the checkpoint has a
// projection), the pooled output, the token ids and whether the text was truncated. ctx cancels
// between batches and between encoder layers.
func (e *TextEncoder) EmbedTexts(ctx context.Context, texts []string) ([]TextEmbedding, error) {
	if e.rt.Closed() {
		return nil, ErrClosed
	}
	n := int64(e.info.ContextLength)
	d, p := e.info.Text.HiddenSize, e.info.ProjectionDim
	out := make([]TextEmbedding, 0, len(texts))
	for start := 0; start < len(texts); start += e.opts.batchSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch := texts[start:min(start+e.opts.batchSize, len(texts))]
		b := int64(len(batch))
		ids := make([][]int64, len(batch))
		flat := make([]int64, 0, int(b*n))
		for i, s := range batch {
			enc := e.tok.Encode(s, int(n))
			out = append(out, TextEmbedding{InputIDs: enc.IDs, Tokens: enc.Tokens, Truncated: enc.Truncated})
			row := make([]int64, n)
			for j := range row {
				row[j] = int64(e.tok.Pad())
			}
			for j, id := range enc.IDs {
				row[j] = int64(id)
			}
			ids[i] = row
			flat = append(flat, row...)
		}
		pool := clip.PoolPositions(ids, e.info.Text.EOSTokenID)
		var pooled, embeds []float32
		err := e.rt.Run(func() error {
			var t gotchutil.Tape
			defer t.Release()
			pt, et := e.tower.Forward(ctx, &t, t.Int64(flat, b, n), b, n, pool)
			if err := t.Err(); err != nil {
				return err
			}
			var err error
			if pooled, err = gotchutil.Float32s(pt); err != nil {
				return err
			}
			if et != nil {
				embeds, err = gotchutil.Float32s(et)
			}
			return err
		})
		if errors.Is(err, gotchutil.ErrClosed) {
			err = ErrClosed
		}
		if err != nil {
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return nil, err
			}
			return nil, fmt.Errorf("safety: text encoder forward: %w", err)
		}
		for i := range batch {
			r := &out[start+i]
			r.PooledOutput = pooled[i*d : (i+1)*d : (i+1)*d]
			if embeds != nil {
				r.TextEmbeds = embeds[i*p : (i+1)*p : (i+1)*p]
			}
			for _, v := range r.PooledOutput {
				if !finite32(v) {
					return nil, fmt.Errorf("text %d: %w: pooled output %v", start+i, ErrNonFinite, v)
				}
			}
			for _, v := range r.TextEmbeds {
				if !finite32(v) {
					return nil, fmt.Errorf("text %d: %w: text embedding %v", start+i, ErrNonFinite, v)
				}
			}
		}
	}
	return out, nil
}
