package clip

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"github.com/sdsafety/safety/internal/gotchutil"
)

// TestEncoderSpec: the encoder's layers as one stack per weight kind (q, k and v apart), one part per
// layer, and no layers as empty stacks.
func TestEncoderSpec(t *testing.T) {
	cfg := EncoderConfig{HiddenSize: 4, IntermediateSize: 6, NumAttentionHeads: 2, HiddenAct: "quick_gelu", LayerNormEps: 1e-5}
	tests := []struct {
		name     string
		layers   int
		kShape   []int64
		fc1Shape []int64
		kParts   []string
	}{
		{name: "two layers", layers: 2, kShape: []int64{2, 4, 4}, fc1Shape: []int64{2, 6, 4},
			kParts: []string{"p.encoder.layers.0.self_attn.k_proj.weight", "p.encoder.layers.1.self_attn.k_proj.weight"}},
		{name: "no layers", layers: 0, kShape: []int64{0, 0}, fc1Shape: []int64{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.NumHiddenLayers = tc.layers
			e := newEncoder(c, false, false)
			s := NewSpec()
			e.spec(s.At("p.").Sub("encoder"))
			params := s.Params()
			if len(params) != 16 {
				t.Fatalf("%d stacked weights, want 16", len(params))
			}
			if got := len(Keys(params)); got != 16*tc.layers {
				t.Fatalf("%d layer keys, want %d", got, 16*tc.layers)
			}
			byKey := map[string]Param{}
			for _, p := range params {
				if p.Dst != nil || p.Stack == nil {
					t.Errorf("%s: bound to a single tensor, want a stack", p.Key)
				}
				byKey[p.Key] = p
			}
			k := byKey["p.encoder.layers.*.self_attn.k_proj.weight"]
			if !slices.Equal(k.Shape, tc.kShape) || !slices.Equal(k.Parts, tc.kParts) || k.Stack != &e.stack.kW {
				t.Errorf("k %+v, want shape %v parts %v bound to the stack's kW", k.Group, tc.kShape, tc.kParts)
			}
			if fc1 := byKey["p.encoder.layers.*.mlp.fc1.weight"]; !slices.Equal(fc1.Shape, tc.fc1Shape) || fc1.Stack != &e.stack.fc1W {
				t.Errorf("fc1 shape %v, want %v bound to fc1W", fc1.Shape, tc.fc1Shape)
			}
		})
	}
}

// TestSpecListsWhatItBinds: for both towers, every listed checkpoint key belongs to exactly one
// parameter, every parameter is bound to its own field, and the listing is the published layout.
func TestSpecListsWhatItBinds(t *testing.T) {
	enc := EncoderConfig{HiddenSize: 8, IntermediateSize: 16, NumAttentionHeads: 2, NumHiddenLayers: 2,
		HiddenAct: "quick_gelu", LayerNormEps: 1e-5}
	vcfg := Config{Vision: VisionConfig{EncoderConfig: enc, PatchSize: 4, ImageSize: 8, NumChannels: 3}, ProjectionDim: 6}
	tcfg := TextConfig{EncoderConfig: enc, VocabSize: 10, MaxPositionEmbeddings: 7}
	_, vision := newVision(vcfg, VisionPrefix, false)
	_, text := newText(tcfg, BareTextPrefix, 6, false, gotch.CPU)
	_, unprojected := newText(tcfg, TextPrefix, 0, false, gotch.CPU)
	tests := []struct {
		name  string
		spec  Spec
		other map[string][]int64 // the keys outside the encoder layers
	}{
		{"vision", vision, map[string][]int64{
			VisionPrefix + "embeddings.class_embedding":           {8},
			VisionPrefix + "embeddings.patch_embedding.weight":    {8, 3, 4, 4},
			VisionPrefix + "embeddings.position_embedding.weight": {5, 8},
			VisionPrefix + "pre_layrnorm.weight":                  {8},
			VisionPrefix + "pre_layrnorm.bias":                    {8},
			VisionPrefix + "post_layernorm.weight":                {8},
			VisionPrefix + "post_layernorm.bias":                  {8},
			"visual_projection.weight":                            {6, 8},
		}},
		{"text with projection", text, map[string][]int64{
			"embeddings.token_embedding.weight":    {10, 8},
			"embeddings.position_embedding.weight": {7, 8},
			"final_layer_norm.weight":              {8},
			"final_layer_norm.bias":                {8},
			KeyTextProjection:                      {6, 8},
		}},
		{"text without projection", unprojected, map[string][]int64{
			TextPrefix + "embeddings.token_embedding.weight":    {10, 8},
			TextPrefix + "embeddings.position_embedding.weight": {7, 8},
			TextPrefix + "final_layer_norm.weight":              {8},
			TextPrefix + "final_layer_norm.bias":                {8},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			params := tc.spec.Params()
			owners := map[string]int{}
			bound := map[any]bool{}
			for _, p := range params {
				for _, part := range p.Parts {
					owners[part]++
				}
				var dst any = p.Dst
				if p.Stack != nil {
					dst = p.Stack
				}
				if (p.Dst == nil) == (p.Stack == nil) || bound[dst] {
					t.Errorf("parameter %q: destination %v, %v: not exactly one, or shared", p.Key, p.Dst, p.Stack)
				}
				bound[dst] = true
			}
			keys := Keys(params)
			for k, n := range owners {
				if n != 1 {
					t.Errorf("key %q is a part of %d parameters", k, n)
				}
			}
			if len(keys) != len(tc.other)+16*enc.NumHiddenLayers {
				t.Errorf("%d keys, want %d", len(keys), len(tc.other)+16*enc.NumHiddenLayers)
			}
			for k, shape := range tc.other {
				if !slices.Equal(keys[k], shape) {
					t.Errorf("key %q: shape %v, want %v", k, keys[k], shape)
				}
			}
		})
	}
}

// TestClassOnlyNeedsNonCausal: a class-token-only last layer is refused for a causal encoder.
func TestClassOnlyNeedsNonCausal(t *testing.T) {
	var tape gotchutil.Tape
	defer tape.Release()
	e := &Encoder{causal: true}
	if y := e.Forward(context.Background(), &tape, nil, true); y != nil || tape.Err() == nil ||
		!strings.Contains(tape.Err().Error(), "non-causal") {
		t.Errorf("Forward = %v, %v; want nil and a non-causal error", y, tape.Err())
	}
}
