package safety

import (
	"fmt"
	"math"
)

// Concepts are the checker's concept embeddings and thresholds: 17 NSFW concepts and 3 "special care"
// ones in the published model, read from the checkpoint (concept_embeds, concept_embeds_weights,
// special_care_embeds, special_care_embeds_weights).
type Concepts struct {
	// Embeds are the NSFW concept embeddings, one row of ProjectionDim values each.
	Embeds [][]float32
	// Thresholds are the NSFW concept thresholds, one per row of Embeds.
	Thresholds []float32
	// SpecialEmbeds and SpecialThresholds are the special-care concepts.
	SpecialEmbeds     [][]float32
	SpecialThresholds []float32
}

// specialCareAdjustment is what diffusers adds to every later score once a special-care concept hits.
const specialCareAdjustment = float32(0.01)

// score applies diffusers' StableDiffusionSafetyChecker.forward rule to one image embedding
// (embeds: [P], in float32) and fills r. userAdjustment is added to every NSFW concept score
// (0 reproduces diffusers). It returns an error when the embedding or a similarity is not finite.
//
// The arithmetic is numpy's float32 arithmetic as diffusers runs it:
//
//	special_k = round3(cos_k − w_k + adj)   adj starts at 0 and becomes 0.01 after the first special hit
//	concept_k = round3(cos_k − w_k + adj)   NSFW iff any concept_k > 0
//
// where round3(x) = rint(float32(x·1000))/1000 (round half to even), so a score counts iff
// float32(x·1000) > 0.5.
func (c *Concepts) score(embeds []float32, userAdjustment float32, r *Result) error {
	for i, e := range embeds {
		if !finite32(e) {
			return fmt.Errorf("%w: image embedding[%d] = %v", ErrNonFinite, i, e)
		}
	}
	r.ImageEmbeds = embeds
	var err error
	if r.SpecialCosDist, err = cosineSimilarities(embeds, c.SpecialEmbeds); err != nil {
		return err
	}
	if r.CosDist, err = cosineSimilarities(embeds, c.Embeds); err != nil {
		return err
	}
	for _, s := range [][]float32{r.SpecialCosDist, r.CosDist} {
		for i, v := range s {
			if !finite32(v) {
				return fmt.Errorf("%w: cosine similarity[%d] = %v", ErrNonFinite, i, v)
			}
		}
	}

	adjustment := float32(0)
	r.SpecialScores = make([]float32, len(r.SpecialCosDist))
	r.SpecialConcepts = r.SpecialConcepts[:0]
	for k, cos := range r.SpecialCosDist {
		s := round3(cos - c.SpecialThresholds[k] + adjustment)
		r.SpecialScores[k] = s
		if s > 0 {
			r.SpecialConcepts = append(r.SpecialConcepts, k)
			adjustment = specialCareAdjustment
		}
	}
	r.SpecialCare = len(r.SpecialConcepts) > 0

	r.ConceptScores = make([]float32, len(r.CosDist))
	r.BadConcepts = r.BadConcepts[:0]
	for k, cos := range r.CosDist {
		s := round3(cos - c.Thresholds[k] + adjustment + userAdjustment)
		r.ConceptScores[k] = s
		if s > 0 {
			r.BadConcepts = append(r.BadConcepts, k)
		}
	}
	r.NSFW = len(r.BadConcepts) > 0
	if r.SpecialConcepts == nil {
		r.SpecialConcepts = []int{}
	}
	if r.BadConcepts == nil {
		r.BadConcepts = []int{}
	}
	return nil
}

// round3 is numpy's round(x, 3) on a float32: rint(x·1000)/1000, every step in float32.
func round3(x float32) float32 {
	y := x * 1000
	return float32(math.RoundToEven(float64(y))) / 1000
}

// cosineSimilarities returns cos(e, rows[k]) for every row, as torch computes
// mm(normalize(e), normalize(rows)ᵀ) with normalize(v) = v / ‖v‖₂: norms and dot products accumulate
// in float64, and each normalised element is the float64 quotient rounded to float32 (which equals
// torch's float32 division by the float32 norm). A vector whose norm is degenerate (see vectorNorm) is
// an error wrapping ErrNonFinite rather than a row of cosines that do not depend on the image.
func cosineSimilarities(e []float32, rows [][]float32) ([]float32, error) {
	ne, err := normalize(e)
	if err != nil {
		return nil, fmt.Errorf("image embedding: %w", err)
	}
	out := make([]float32, len(rows))
	for k, row := range rows {
		nr, err := normalize(row)
		if err != nil {
			return nil, fmt.Errorf("concept embedding %d: %w", k, err)
		}
		var dot float64
		for i := range ne {
			dot += float64(ne[i]) * float64(nr[i])
		}
		out[k] = float32(dot)
	}
	return out, nil
}

// minNorm is torch.nn.functional.normalize's eps: below it torch divides by 1e-12 instead of the
// norm, and the result is no longer a unit vector, so its cosines mean nothing.
const minNorm = 1e-12

// vectorNorm returns ‖v‖₂, accumulated in float64 and rounded to float32 (the value torch divides by),
// or an error wrapping ErrNonFinite when it is below 1e-12 (a zero, subnormal or underflowed vector)
// or not finite in float32 (a vector whose norm overflows float32 would normalise to all zeros, and
// every cosine would be exactly 0, which the published thresholds read as "safe").
func vectorNorm(v []float32) (float32, error) {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	n := math.Sqrt(ss)
	n32 := float32(n)
	if !(n >= minNorm) || !finite32(n32) {
		return 0, fmt.Errorf("%w: the vector's norm %g is degenerate (want a finite float32 of at least %g)", ErrNonFinite, n, minNorm)
	}
	return n32, nil
}

func normalize(v []float32) ([]float32, error) {
	n, err := vectorNorm(v)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) / float64(n))
	}
	return out, nil
}

func finite32(x float32) bool {
	return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0)
}

// rows splits flat into rows of width n.
func rows(flat []float32, n int) [][]float32 {
	if n <= 0 {
		return nil
	}
	out := make([][]float32, 0, len(flat)/n)
	for i := 0; i+n <= len(flat); i += n {
		out = append(out, flat[i:i+n:i+n])
	}
	return out
}

// Concepts returns a copy of the checker's built-in concept embeddings and thresholds.
func (c *Checker) Concepts() Concepts {
	cp := func(rows [][]float32) [][]float32 {
		out := make([][]float32, len(rows))
		for i, r := range rows {
			out[i] = append([]float32(nil), r...)
		}
		return out
	}
	return Concepts{
		Embeds:            cp(c.concepts.Embeds),
		Thresholds:        append([]float32(nil), c.concepts.Thresholds...),
		SpecialEmbeds:     cp(c.concepts.SpecialEmbeds),
		SpecialThresholds: append([]float32(nil), c.concepts.SpecialThresholds...),
	}
}
