package safety

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// CustomScore is the score of one custom concept for one image.
type CustomScore struct {
	// Name is the concept's name as given to AddConcept or AddConceptEmbedding.
	Name string `json:"name"`
	// Cos is the cosine similarity of the image embedding and the concept embedding, computed as
	// for the built-in concepts.
	Cos float32 `json:"cos"`
	// Score is round3(Cos − threshold), with the built-in concepts' float32 rounding; the
	// special-care and WithAdjustment adjustments do not apply.
	Score float32 `json:"score"`
	// Hit reports Score > 0.
	Hit bool `json:"hit"`
}

// CustomConcept is a concept added to a Checker.
type CustomConcept struct {
	Name      string    `json:"name"`
	Text      string    `json:"text,omitempty"` // the text it was embedded from; "" for AddConceptEmbedding
	Embedding []float32 `json:"embedding"`      // [P], as given (not normalised)
	Threshold float32   `json:"threshold"`
}

// WithCustomConceptsCount makes custom concept hits count for the verdict: with true, an image with
// any custom hit has Result.NSFW set (BadConcepts still lists built-in concepts only). The default,
// false, leaves diffusers' verdict alone and only reports Result.CustomScores.
func WithCustomConceptsCount(count bool) Option {
	return func(o *options) error {
		o.customCount = count
		return nil
	}
}

// customConcepts is the Checker's set of custom concepts and its text encoder. Checks read an
// immutable snapshot (copy-on-write), so adding or removing concepts never blocks or races with a
// running check; a change applies from the next batch a check scores.
type customConcepts struct {
	mu   sync.Mutex // serialises writers
	set  atomic.Pointer[[]CustomConcept]
	text atomic.Pointer[TextEncoder]
}

func (cc *customConcepts) snapshot() []CustomConcept {
	if p := cc.set.Load(); p != nil {
		return *p
	}
	return nil
}

// scoreCustom fills r.CustomScores for the image embedding embeds [P] (already checked finite)
// against the concepts of one snapshot; with count, a hit sets r.NSFW.
func scoreCustom(concepts []CustomConcept, embeds []float32, count bool, r *Result) error {
	if len(concepts) == 0 {
		return nil
	}
	rows := make([][]float32, len(concepts))
	for i := range concepts {
		rows[i] = concepts[i].Embedding
	}
	cos, err := cosineSimilarities(embeds, rows)
	if err != nil {
		return fmt.Errorf("custom concepts: %w", err)
	}
	r.CustomScores = make([]CustomScore, len(concepts))
	for i, c := range concepts {
		if !finite32(cos[i]) {
			return fmt.Errorf("%w: cosine similarity with custom concept %q = %v", ErrNonFinite, c.Name, cos[i])
		}
		s := round3(cos[i] - c.Threshold)
		r.CustomScores[i] = CustomScore{Name: c.Name, Cos: cos[i], Score: s, Hit: s > 0}
		if s > 0 && count {
			r.NSFW = true
		}
	}
	return nil
}

// SetTextEncoder sets the text encoder AddConcept embeds texts with (nil unsets it). Its
// projection width must equal the checker's (Info().ProjectionDim): the encoder must come from the
// CLIP model the checker's vision tower belongs to. The checker does not take ownership: close the
// encoder after the checker is no longer used with it.
func (c *Checker) SetTextEncoder(enc *TextEncoder) error {
	if c.rt.Closed() {
		return ErrClosed
	}
	if enc != nil {
		p := enc.Info().ProjectionDim
		if p == 0 {
			return ErrNoProjection
		}
		if p != c.info.ProjectionDim {
			return fmt.Errorf("%w: the text encoder projects to %d dimensions, the checker's image embeddings have %d",
				ErrInvalidInput, p, c.info.ProjectionDim)
		}
	}
	c.custom.text.Store(enc)
	return nil
}

// AddConcept embeds text with the text encoder set by SetTextEncoder and adds it as a custom
// concept (see AddConceptEmbedding). A text longer than the model's context is refused with
// ErrTextTooLong rather than added truncated.
func (c *Checker) AddConcept(name, text string, threshold float32) error {
	return c.AddConceptContext(context.Background(), name, text, threshold)
}

// AddConceptContext is AddConcept with a context for the embedding.
func (c *Checker) AddConceptContext(ctx context.Context, name, text string, threshold float32) error {
	if c.rt.Closed() {
		return ErrClosed
	}
	enc := c.custom.text.Load()
	if enc == nil {
		return ErrNoTextEncoder
	}
	if err := c.checkConcept(name, threshold); err != nil {
		return err
	}
	res, err := enc.EmbedTexts(ctx, []string{text})
	if err != nil {
		return fmt.Errorf("safety: embed concept %q: %w", name, err)
	}
	if res[0].Truncated {
		return fmt.Errorf("%w: concept %q is %d tokens, the model reads %d", ErrTextTooLong, name, res[0].Tokens,
			enc.Info().ContextLength-2)
	}
	if res[0].TextEmbeds == nil {
		return ErrNoProjection
	}
	return c.addConcept(CustomConcept{Name: name, Text: text, Embedding: res[0].TextEmbeds, Threshold: threshold})
}

// AddConceptEmbedding adds a custom concept: every later check reports, in Result.CustomScores,
// the cosine similarity of each image embedding with embedding ([P], P = Info().ProjectionDim;
// e.g. from TextEncoder.Embed) and the score round3(cos − threshold); the concept hits when the
// score is positive. Names are unique; threshold must be in [−1, 1]; the embedding must be finite
// and not zero. It is safe to call while checks run.
func (c *Checker) AddConceptEmbedding(name string, embedding []float32, threshold float32) error {
	if c.rt.Closed() {
		return ErrClosed
	}
	if err := c.checkConcept(name, threshold); err != nil {
		return err
	}
	return c.addConcept(CustomConcept{Name: name, Embedding: embedding, Threshold: threshold})
}

// checkConcept validates a name and a threshold.
func (c *Checker) checkConcept(name string, threshold float32) error {
	if name == "" {
		return fmt.Errorf("%w: empty concept name", ErrInvalidInput)
	}
	if !finite32(threshold) || threshold < -1 || threshold > 1 {
		return fmt.Errorf("%w: concept %q: threshold %v (want a value in [-1, 1])", ErrInvalidInput, name, threshold)
	}
	return nil
}

func (c *Checker) addConcept(cc CustomConcept) error {
	if len(cc.Embedding) != c.info.ProjectionDim {
		return fmt.Errorf("%w: concept %q: embedding of %d values, the checker's image embeddings have %d",
			ErrInvalidInput, cc.Name, len(cc.Embedding), c.info.ProjectionDim)
	}
	for i, v := range cc.Embedding {
		if !finite32(v) {
			return fmt.Errorf("%w: concept %q: embedding[%d] = %v", ErrInvalidInput, cc.Name, i, v)
		}
	}
	if _, err := vectorNorm(cc.Embedding); err != nil {
		// A zero, subnormal or float32-overflowing embedding would give every image the same cosine.
		return fmt.Errorf("%w: concept %q: embedding: %v", ErrInvalidInput, cc.Name, err)
	}
	cc.Embedding = slices.Clone(cc.Embedding)
	c.custom.mu.Lock()
	defer c.custom.mu.Unlock()
	old := c.custom.snapshot()
	for _, o := range old {
		if o.Name == cc.Name {
			return fmt.Errorf("%w: concept %q already exists (RemoveConcept first)", ErrInvalidInput, cc.Name)
		}
	}
	next := append(slices.Clip(old), cc)
	c.custom.set.Store(&next)
	return nil
}

// RemoveConcept removes the custom concept name and reports whether it existed.
func (c *Checker) RemoveConcept(name string) bool {
	c.custom.mu.Lock()
	defer c.custom.mu.Unlock()
	old := c.custom.snapshot()
	i := slices.IndexFunc(old, func(o CustomConcept) bool { return o.Name == name })
	if i < 0 {
		return false
	}
	next := slices.Delete(slices.Clone(old), i, i+1)
	c.custom.set.Store(&next)
	return true
}

// CustomConcepts returns the custom concepts in the order they were added (copies).
func (c *Checker) CustomConcepts() []CustomConcept {
	old := c.custom.snapshot()
	out := make([]CustomConcept, len(old))
	for i, o := range old {
		o.Embedding = slices.Clone(o.Embedding)
		out[i] = o
	}
	return out
}
