package clip

import (
	"fmt"

	"github.com/sugarme/gotch/ts"
)

// The key spec: each module describes its weights once, as (checkpoint path, shape, destination
// field), on a [Spec] positioned at the module's path (candle's vs.pp("…") idea). The validator lists
// the checkpoint keys from that description ([Keys]) and the loader binds each loaded tensor to its
// field from the same description ([load]), so a key cannot be listed without being bound, nor bound
// without being listed.

// Group is one tensor to load: checkpoint tensors concatenated along dimension 0 (row-major data
// back to back), with the given shape.
type Group struct {
	Key   string   // name of the loaded tensor: a checkpoint key, or "…layers.*.name" for a stack
	Parts []string // checkpoint keys, in order
	Shape []int64
}

// Param is one tensor of the model: checkpoint tensors concatenated along dimension 0 (row-major data
// back to back, see [Group]), each of shape PartShape, loaded into *Dst.
type Param struct {
	Group
	PartShape []int64     // checkpoint shape of every part
	Dst       **ts.Tensor // the module field the loaded tensor is bound to
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

// Stack adds a weight stacked over the n layers under s ("layers.0.", "layers.1.", …): layer l's slice
// is its parts (under "layers.l.", each of shape partShape) concatenated along dimension 0 — one part
// for a plain weight, q, k and v for a fused projection. The loaded tensor, named
// s.path+"layers.*."+name, is [n, len(parts)·partShape[0], partShape[1:]...], bound to *dst.
func (s Spec) Stack(dst **ts.Tensor, n int, name string, parts []string, partShape ...int64) {
	g := Group{Key: s.path + "layers.*." + name}
	per := append([]int64{int64(len(parts)) * partShape[0]}, partShape[1:]...)
	if n == 0 { // no layers: an empty stack
		per = []int64{0}
	}
	g.Shape = append([]int64{int64(n)}, per...)
	for l := range n {
		for _, p := range parts {
			g.Parts = append(g.Parts, fmt.Sprintf("%slayers.%d.%s", s.path, l, p))
		}
	}
	*s.params = append(*s.params, Param{Group: g, PartShape: partShape, Dst: dst})
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

// spec adds the encoder's layers under s (the encoder's path, "….encoder."), each weight stacked over
// the layers and q, k and v fused (rows q, then k, then v), in [LayerStack]'s field order.
func (e *Encoder) spec(s Spec) {
	c, st := e.cfg, &e.stack
	d, i, n := int64(c.HiddenSize), int64(c.IntermediateSize), c.NumHiddenLayers
	one := func(dst **ts.Tensor, name string, shape ...int64) { s.Stack(dst, n, name, []string{name}, shape...) }
	linear := func(w, b **ts.Tensor, name string, out, in int64) { // a Linear [out, in] with its bias [out]
		one(w, name+".weight", out, in)
		one(b, name+".bias", out)
	}
	norm := func(w, b **ts.Tensor, name string) { one(w, name+".weight", d); one(b, name+".bias", d) }
	qkv := func(dst **ts.Tensor, kind string, shape ...int64) {
		s.Stack(dst, n, "self_attn.qkv_proj."+kind, []string{"self_attn.q_proj." + kind, "self_attn.k_proj." + kind,
			"self_attn.v_proj." + kind}, shape...)
	}
	norm(&st.norm1W, &st.norm1B, "layer_norm1")
	qkv(&st.qkvW, "weight", d, d)
	qkv(&st.qkvB, "bias", d)
	linear(&st.outW, &st.outB, "self_attn.out_proj", d, d)
	norm(&st.norm2W, &st.norm2B, "layer_norm2")
	linear(&st.fc1W, &st.fc1B, "mlp.fc1", i, d)
	linear(&st.fc2W, &st.fc2B, "mlp.fc2", d, i)
}
