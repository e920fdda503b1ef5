package clip

import (
	"fmt"

	"github.com/sugarme/gotch/ts"
)

// The key spec: each module describes its weights once, as (checkpoint path, shape, destination
// field), on a [Spec] positioned at the module's path (candle's vs.pp("…") idea). The validator lists
// the checkpoint keys from that description ([Keys]) and the loader binds each loaded tensor to its
// field from the same description ([load]), so a key cannot be listed without being bound, nor bound
// without being listed. The spec says what to load; the loader decides, per parameter, whether the
// weight is a view of the mapped file or a copy ([Loading]).

// Group is one tensor to load: checkpoint tensors concatenated along dimension 0 (row-major data
// back to back), with the given shape.
type Group struct {
	Key   string   // name of the loaded tensor: a checkpoint key, or "…layers.*.name" for a stack
	Parts []string // checkpoint keys, in order
	Shape []int64
}

// Param is one tensor of the model: checkpoint tensors concatenated along dimension 0 (row-major data
// back to back, see [Group]), each of shape PartShape, loaded into *Dst (a single tensor) or *Stack
// (a weight of every encoder layer, one part per layer). Exactly one of Dst and Stack is set.
type Param struct {
	Group
	PartShape []int64     // checkpoint shape of every part
	Dst       **ts.Tensor // the module field a single tensor is bound to
	Stack     *Stacked    // the module field a per-layer weight is bound to
}

// Spec collects the parameters of a model under a key path. Specs made from one another by [Spec.Sub]
// and [Spec.At] share the list.
type Spec struct {
	path   string // key prefix, ending in "." unless empty
	params *[]Param
}

// NewSpec returns an empty spec at the checkpoint's top level.
func NewSpec() Spec { return Spec{params: new([]Param)} }

// At returns the spec at the raw key prefix p under s (p ends in "." or is empty).
func (s Spec) At(p string) Spec { return Spec{path: s.path + p, params: s.params} }

// Sub returns the spec of the submodule name of s (path name + ".").
func (s Spec) Sub(name string) Spec { return s.At(name + ".") }

// Tensor adds the checkpoint tensor name (under s) of the given shape, bound to *dst.
func (s Spec) Tensor(dst **ts.Tensor, name string, shape ...int64) {
	key := s.path + name
	*s.params = append(*s.params, Param{Group: Group{Key: key, Parts: []string{key}, Shape: shape}, PartShape: shape, Dst: dst})
}

// Stack adds a weight of each of the n layers under s ("layers.0.", "layers.1.", …): layer l's part
// is "layers.l."+name, of shape partShape. The group, named s.path+"layers.*."+name, is
// [n, partShape...] (an empty [0, 0] with no layers); the loader binds it to *dst as one stacked
// copy or as per-layer views (see [Stacked]).
func (s Spec) Stack(dst *Stacked, n int, name string, partShape ...int64) {
	g := Group{Key: s.path + "layers.*." + name}
	per := partShape
	if n == 0 { // no layers: an empty stack
		per = []int64{0}
	}
	g.Shape = append([]int64{int64(n)}, per...)
	for l := range n {
		g.Parts = append(g.Parts, fmt.Sprintf("%slayers.%d.%s", s.path, l, name))
	}
	*s.params = append(*s.params, Param{Group: g, PartShape: partShape, Stack: dst})
}

// Params returns the parameters added so far, in the order they were added.
func (s Spec) Params() []Param { return *s.params }

// Keys lists the checkpoint keys of params with their shapes: what the checkpoint must hold.
func Keys(params []Param) map[string][]int64 {
	keys := map[string][]int64{}
	for _, p := range params {
		for _, part := range p.Parts {
			keys[part] = p.PartShape
		}
	}
	return keys
}

// spec adds the LayerNorm's weight and bias [d] under s.
func (n *LayerNorm) spec(s Spec, d int64) {
	s.Tensor(&n.Weight, "weight", d)
	s.Tensor(&n.Bias, "bias", d)
}

// spec adds the encoder's layers under s (the encoder's path, "….encoder."), one [Stacked] weight
// per kind over the layers, in [LayerStack]'s field order.
func (e *Encoder) spec(s Spec) {
	c, st := e.cfg, &e.stack
	d, i, n := int64(c.HiddenSize), int64(c.IntermediateSize), c.NumHiddenLayers
	linear := func(w, b *Stacked, name string, out, in int64) { // a Linear [out, in] with its bias [out]
		s.Stack(w, n, name+".weight", out, in)
		s.Stack(b, n, name+".bias", out)
	}
	norm := func(w, b *Stacked, name string) { s.Stack(w, n, name+".weight", d); s.Stack(b, n, name+".bias", d) }
	norm(&st.norm1W, &st.norm1B, "layer_norm1")
	linear(&st.qW, &st.qB, "self_attn.q_proj", d, d)
	linear(&st.kW, &st.kB, "self_attn.k_proj", d, d)
	linear(&st.vW, &st.vB, "self_attn.v_proj", d, d)
	linear(&st.outW, &st.outB, "self_attn.out_proj", d, d)
	norm(&st.norm2W, &st.norm2B, "layer_norm2")
	linear(&st.fc1W, &st.fc1B, "mlp.fc1", i, d)
	linear(&st.fc2W, &st.fc2B, "mlp.fc2", d, i)
}
