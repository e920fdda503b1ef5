package clip

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/sdsafety/safety/internal/gotchutil"
)

func TestGroups(t *testing.T) {
	cfg := EncoderConfig{HiddenSize: 4, IntermediateSize: 6, NumAttentionHeads: 2, HiddenAct: "quick_gelu", LayerNormEps: 1e-5}
	tests := []struct {
		name      string
		layers    int
		qkvShape  []int64
		fc1Shape  []int64
		qkvParts  []string
		ownGroups []string // the keys loaded on their own, in order
	}{
		{name: "two layers", layers: 2, qkvShape: []int64{2, 12, 4}, fc1Shape: []int64{2, 6, 4},
			qkvParts: []string{"p.encoder.layers.0.self_attn.q_proj.weight", "p.encoder.layers.0.self_attn.k_proj.weight",
				"p.encoder.layers.0.self_attn.v_proj.weight", "p.encoder.layers.1.self_attn.q_proj.weight",
				"p.encoder.layers.1.self_attn.k_proj.weight", "p.encoder.layers.1.self_attn.v_proj.weight"},
			ownGroups: []string{"a", "z"}},
		{name: "no layers", layers: 0, qkvShape: []int64{0, 0}, fc1Shape: []int64{0, 0}, ownGroups: []string{"a", "z"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.NumHiddenLayers = tc.layers
			want := map[string][]int64{"z": {1}, "a": {2, 2}}
			AddLayerKeys(want, c, "p.")
			if got := len(want) - 2; got != 16*tc.layers {
				t.Fatalf("%d layer keys, want %d", got, 16*tc.layers)
			}
			groups := Groups(tc.layers, "p.", want)
			if len(groups) != len(StackedLayerWeights)+len(tc.ownGroups) {
				t.Fatalf("%d groups, want %d", len(groups), len(StackedLayerWeights)+len(tc.ownGroups))
			}
			byKey := map[string]Group{}
			for _, g := range groups {
				byKey[g.Key] = g
			}
			qkv := byKey[StackKey("p.", "self_attn.qkv_proj.weight")]
			if !slices.Equal(qkv.Shape, tc.qkvShape) || !slices.Equal(qkv.Parts, tc.qkvParts) {
				t.Errorf("qkv group %+v, want shape %v parts %v", qkv, tc.qkvShape, tc.qkvParts)
			}
			if fc1 := byKey[StackKey("p.", "mlp.fc1.weight")]; !slices.Equal(fc1.Shape, tc.fc1Shape) {
				t.Errorf("fc1 shape %v, want %v", fc1.Shape, tc.fc1Shape)
			}
			var own []string
			for _, g := range groups[len(StackedLayerWeights):] {
				own = append(own, g.Key)
			}
			if !slices.Equal(own, tc.ownGroups) {
				t.Errorf("own groups %v, want %v", own, tc.ownGroups)
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
