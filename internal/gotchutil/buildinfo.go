package gotchutil

import (
	"encoding/json"
	"sync"

	"github.com/sugarme/gotch"
)

// BuildInfo describes the libtorch that gotch was compiled and linked against.
type BuildInfo struct {
	// Libtorch is the libtorch version ("2.1.0"), or "" when unknown (gotch built outside this project).
	Libtorch string `json:"libtorch"`
	// CUDA reports whether the CUDA libraries were linked.
	CUDA bool `json:"cuda"`
	// StubbedOps lists the generated gotch wrappers (op names, e.g. "scaled_dot_product_attention")
	// that did not compile against this libtorch and return an error instead.
	StubbedOps []string `json:"stubbed_ops"`
	// GeneratedWrappers is the number of generated wrappers gotch has.
	GeneratedWrappers int `json:"generated_wrappers"`
	// Known is false when no build information was compiled in.
	Known bool `json:"-"`
}

var (
	buildOnce sync.Once
	build     BuildInfo
)

// Build returns the build information recorded by cmd/safety-setup (internal/setup).
func Build() BuildInfo {
	buildOnce.Do(func() {
		if s := buildInfoJSON(); s != "" && json.Unmarshal([]byte(s), &build) == nil {
			build.Known = true
		}
	})
	return build
}

// HasOp reports whether the gotch wrapper for op (a libtorch op name such as
// "scaled_dot_product_attention") is a real one. It is true when nothing is known about the build.
func HasOp(op string) bool {
	for _, s := range Build().StubbedOps {
		if s == op {
			return false
		}
	}
	return true
}

// SDPAWorks reports whether scaled_dot_product_attention runs in this build, in both the forms the
// encoder uses (plain, and is_causal for the text tower): it is missing before libtorch 2.0 (a stub
// in the version-adaptive build), and upstream gotch's wrapper passes its absent mask in a way
// libtorch 2.1 rejects. Call it on the worker thread.
func SDPAWorks() bool {
	if !HasOp("scaled_dot_product_attention") {
		return false
	}
	var t Tape
	defer t.Release()
	q := t.Float32(make([]float32, 8), 1, 1, 2, 4)
	t.SDPA(q, q, q, 0.5)
	t.SDPACausal(q, q, q, 0.5)
	return t.Err() == nil
}

// ProbeDType runs the kinds of op the vision tower needs (conv2d, then those of
// [ProbeEncoderDType]) on a tiny input in dtype on device, and returns the first failure: libtorch
// 2.1, for one, has no float16 conv2d on the CPU. Call it on the worker thread.
func ProbeDType(device gotch.Device, dtype gotch.DType) error {
	var t Tape
	defer t.Release()
	x := t.ToDevice(t.Float32(make([]float32, 2*3*4*4), 2, 3, 4, 4), device, dtype)
	w := t.ToDevice(t.Float32(make([]float32, 4*3*2*2), 4, 3, 2, 2), device, dtype)
	t.Conv2d(x, w, 2)
	if err := t.Err(); err != nil {
		return err
	}
	return ProbeEncoderDType(device, dtype)
}

// ProbeEncoderDType runs the kinds of op the transformer encoder needs (layer_norm, linear, sigmoid,
// softmax, gelu) on a tiny input in dtype on device, and returns the first failure: libtorch 2.1, for
// one, has no float16 layer_norm on the CPU. Call it on the worker thread.
func ProbeEncoderDType(device gotch.Device, dtype gotch.DType) error {
	var t Tape
	defer t.Release()
	y := t.ToDevice(t.Float32(make([]float32, 2*4*4), 2, 4, 4), device, dtype)
	ln := t.ToDevice(t.Float32([]float32{1, 1, 1, 1}, 4), device, dtype)
	y = t.LayerNorm(y, ln, ln, 1e-5)
	lw := t.ToDevice(t.Float32(make([]float32, 16), 4, 4), device, dtype)
	y = t.Linear(y, lw, ln)
	y = t.Mul(y, t.Sigmoid(y))
	y = t.Gelu(y, "none")
	t.Softmax(y, -1)
	return t.Err()
}
