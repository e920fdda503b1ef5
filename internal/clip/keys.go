package clip

import (
	"fmt"
	"slices"
	"strings"
)

// StackedLayerWeights names the per-layer weights that [Groups] stacks (keys relative to
// "…encoder.layers.N."), in [LayerStack]'s field order. "self_attn.qkv_proj.*" is not a checkpoint
// key: it is q_proj, k_proj and v_proj concatenated.
var StackedLayerWeights = [...]string{
	"layer_norm1.weight", "layer_norm1.bias",
	"self_attn.qkv_proj.weight", "self_attn.qkv_proj.bias",
	"self_attn.out_proj.weight", "self_attn.out_proj.bias",
	"layer_norm2.weight", "layer_norm2.bias",
	"mlp.fc1.weight", "mlp.fc1.bias",
	"mlp.fc2.weight", "mlp.fc2.bias",
}

// StackKey names a stacked layer weight (one of StackedLayerWeights) in the weights map.
func StackKey(prefix, name string) string { return prefix + "encoder.layers.*." + name }

// AddLayerKeys adds to keys the checkpoint keys of the encoder layers under prefix
// (prefix+"encoder.layers.N.…") with their shapes: the one key list of the encoder, for both towers.
func AddLayerKeys(keys map[string][]int64, c EncoderConfig, prefix string) {
	d, i := int64(c.HiddenSize), int64(c.IntermediateSize)
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
}

// Group is one tensor of the model: checkpoint tensors concatenated along dimension 0 (row-major
// data back to back), with the given shape.
type Group struct {
	Key   string   // key in the weights map
	Parts []string // checkpoint keys, in order
	Shape []int64
}

// Groups plans the tensors to load from the validated keys (want, which holds the encoder's keys
// from AddLayerKeys): each of the encoder layers' weights stacked over the layers under StackKey —
// layer 0's, then layer 1's, … with q, k and v fused for self_attn.qkv_proj — and every other key on
// its own, in sorted order.
func Groups(layers int, prefix string, want map[string][]int64) []Group {
	stacked := map[string]bool{}
	var groups []Group
	for _, name := range StackedLayerWeights {
		g := Group{Key: StackKey(prefix, name)}
		var per []int64
		for l := range layers {
			pre := fmt.Sprintf("%sencoder.layers.%d.", prefix, l)
			parts := []string{pre + name}
			if att, kind, ok := strings.Cut(name, "qkv_proj."); ok {
				parts = []string{pre + att + "q_proj." + kind, pre + att + "k_proj." + kind, pre + att + "v_proj." + kind}
			}
			per = slices.Clone(want[parts[0]])
			per[0] *= int64(len(parts))
			g.Parts = append(g.Parts, parts...)
			for _, p := range parts {
				stacked[p] = true
			}
		}
		if per == nil { // no layers: an empty stack of the right rank
			per = []int64{0}
		}
		g.Shape = append([]int64{int64(layers)}, per...)
		groups = append(groups, g)
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, name := range keys {
		if !stacked[name] {
			groups = append(groups, Group{Key: name, Parts: []string{name}, Shape: want[name]})
		}
	}
	return groups
}
