package safety

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/gotchutil"
)

// Checkpoint keys of the scoring head (diffusers' StableDiffusionSafetyChecker).
const (
	keyConceptEmbeds     = "concept_embeds"
	keyConceptThresholds = "concept_embeds_weights"
	keySpecialEmbeds     = "special_care_embeds"
	keySpecialThresholds = "special_care_embeds_weights"
)

// ignoredKeys are buffers the published checkpoints carry and the model does not use.
var ignoredKeys = map[string]bool{
	visionPrefix + "embeddings.position_ids":     true,
	flatVisionPrefix + "embeddings.position_ids": true,
}

// loadWeights validates the checkpoint against cfg and loads the vision weights one tensor at a time
// onto device in dtype (so peak host memory stays near one copy of the weights), and the concept
// head into host float32. Tensors it creates are recorded on t.
// It returns the weights by checkpoint key, the concepts, and the key prefix of the vision tower.
func loadWeights(t *gotchutil.Tape, ck checkpoint.Checkpoint, cfg checkpoint.Config,
	device gotch.Device, dtype gotch.DType) (map[string]*ts.Tensor, *Concepts, string, error) {
	prefix := visionPrefix
	if _, nested := ck.Info(visionPrefix + "embeddings.class_embedding"); !nested {
		if _, flat := ck.Info(flatVisionPrefix + "embeddings.class_embedding"); flat {
			prefix = flatVisionPrefix
		}
	}
	want := visionKeys(cfg, prefix)
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

	var problems []string
	for _, name := range ck.Names() {
		if _, ok := want[name]; !ok && head[name] == nil && !ignoredKeys[name] {
			problems = append(problems, fmt.Sprintf("unexpected tensor %q", name))
		}
	}
	check := func(name string, shape []int64) {
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
	for _, name := range sortedKeys(want) {
		check(name, want[name])
	}
	for _, name := range sortedKeys(head) {
		check(name, head[name])
	}
	if len(problems) > 0 {
		if len(problems) > 8 {
			problems = append(problems[:8], fmt.Sprintf("and %d more", len(problems)-8))
		}
		return nil, nil, "", fmt.Errorf("%w: %s: %s", ErrCheckpoint, ck.Path(), strings.Join(problems, "; "))
	}

	w := make(map[string]*ts.Tensor, len(want))
	for _, name := range sortedKeys(want) {
		x, err := loadTensor(ck, name, device, dtype)
		if err != nil {
			return nil, nil, "", err
		}
		t.Record(name, x, nil)
		w[name] = x
	}

	host := map[string][]float32{}
	for name := range head {
		tn, err := ck.Tensor(name)
		if err != nil {
			return nil, nil, "", fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
		v, err := tn.Float32()
		if err != nil {
			return nil, nil, "", fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
		for i, x := range v {
			if !finite32(x) {
				return nil, nil, "", fmt.Errorf("%w: %s: tensor %q element %d is %v", ErrCheckpoint, ck.Path(), name, i, x)
			}
		}
		host[name] = v
	}
	concepts := &Concepts{
		Embeds:            rows(host[keyConceptEmbeds], int(p)),
		Thresholds:        host[keyConceptThresholds],
		SpecialEmbeds:     rows(host[keySpecialEmbeds], int(p)),
		SpecialThresholds: host[keySpecialThresholds],
	}
	return w, concepts, prefix, nil
}

// loadTensor copies one checkpoint tensor into libtorch, converts it to dtype and moves it to device.
func loadTensor(ck checkpoint.Checkpoint, name string, device gotch.Device, dtype gotch.DType) (*ts.Tensor, error) {
	tn, err := ck.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	src, err := torchDType(tn.DType)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: tensor %q: %v", ErrCheckpoint, ck.Path(), name, err)
	}
	var t gotchutil.Tape
	x, err := gotchutil.FromBytes(tn.Data, src, tn.Shape...)
	x = t.Record("load "+name, x, err)
	y := t.ToDevice(x, device, dtype)
	if err := t.Err(); err != nil {
		t.Release()
		return nil, err
	}
	t.Release(y)
	return y, nil
}

func torchDType(d checkpoint.DType) (gotch.DType, error) {
	switch d {
	case checkpoint.F32:
		return gotch.Float, nil
	case checkpoint.F16:
		return gotch.Half, nil
	case checkpoint.BF16:
		return gotch.BFloat16, nil
	case checkpoint.F64:
		return gotch.Double, nil
	}
	return gotch.Invalid, fmt.Errorf("dtype %s is not a supported float type", d)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
