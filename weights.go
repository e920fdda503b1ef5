package safety

import (
	"fmt"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/clip"
	"github.com/sdsafety/safety/internal/gotchutil"
)

// Checkpoint keys of the scoring head (diffusers' StableDiffusionSafetyChecker).
const (
	keyConceptEmbeds     = "concept_embeds"
	keyConceptThresholds = "concept_embeds_weights"
	keySpecialEmbeds     = "special_care_embeds"
	keySpecialThresholds = "special_care_embeds_weights"
)

// loadWeights validates the checkpoint against cfg, loads the vision tower as l says (clip.LoadVision,
// which validates the concept head's keys and shapes with the tower's) and the concept head into host
// float32. Tensors it creates are recorded on t.
func loadWeights(t *gotchutil.Tape, ck checkpoint.Checkpoint, cfg clip.Config, l *clip.Loading) (*clip.VisionTransformer, *Concepts, error) {
	p := int64(cfg.ProjectionDim)

	// Concept counts come from the checkpoint (17 and 3 in the published model).
	nConcepts, nSpecial := int64(-1), int64(-1)
	if info, ok := ck.Info(keyConceptEmbeds); ok && len(info.Shape) == 2 {
		nConcepts = info.Shape[0]
	}
	if info, ok := ck.Info(keySpecialEmbeds); ok && len(info.Shape) == 2 {
		nSpecial = info.Shape[0]
	}
	head := map[string][]int64{
		keyConceptEmbeds:     {nConcepts, p},
		keyConceptThresholds: {nConcepts},
		keySpecialEmbeds:     {nSpecial, p},
		keySpecialThresholds: {nSpecial},
	}
	tower, err := clip.LoadVision(t, ck, cfg, l, head)
	if err != nil {
		return nil, nil, err
	}

	host := map[string][]float32{}
	for name := range head {
		tn, err := clip.GuardedTensor(ck, name)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
		var v []float32
		err = checkpoint.GuardFault(ck.Path(), func() (err error) { v, err = tn.Float32(); return err })
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
		for i, x := range v {
			if !finite32(x) {
				return nil, nil, fmt.Errorf("%w: %s: tensor %q element %d is %v", ErrCheckpoint, ck.Path(), name, i, x)
			}
		}
		host[name] = v
	}
	for _, name := range []string{keyConceptEmbeds, keySpecialEmbeds} {
		for k, row := range rows(host[name], int(p)) {
			if _, err := vectorNorm(row); err != nil {
				// A zero (or overflowing) concept embedding has cosine 0 with every image.
				return nil, nil, fmt.Errorf("%w: %s: tensor %q row %d: %v", ErrCheckpoint, ck.Path(), name, k, err)
			}
		}
	}
	concepts := &Concepts{
		Embeds:            rows(host[keyConceptEmbeds], int(p)),
		Thresholds:        host[keyConceptThresholds],
		SpecialEmbeds:     rows(host[keySpecialEmbeds], int(p)),
		SpecialThresholds: host[keySpecialThresholds],
	}
	return tower, concepts, nil
}
