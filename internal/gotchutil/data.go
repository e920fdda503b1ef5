package gotchutil

import (
	"fmt"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// FromBytes makes a CPU tensor of dtype and shape from raw little-endian bytes (copied).
func FromBytes(data []byte, dtype gotch.DType, shape ...int64) (*ts.Tensor, error) {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	if want := n * int64(dtype.Size()); want != int64(len(data)) {
		return nil, fmt.Errorf("gotchutil: %d bytes for shape %v of %v, want %d", len(data), shape, dtype, want)
	}
	x, err := ts.OfDataSize(data, shape, dtype)
	if err != nil {
		return nil, TorchError("tensor_from_data", err)
	}
	return x, nil
}

// FromFloat32 makes a CPU float32 tensor of the given shape from data (copied).
func FromFloat32(data []float32, shape ...int64) (*ts.Tensor, error) {
	var b []byte
	if len(data) > 0 {
		b = unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*len(data))
	}
	return FromBytes(b, gotch.Float, shape...)
}

// Float32s copies x (any float dtype, any device) to a new []float32 in row-major order.
// Call it on the worker thread.
func Float32s(x *ts.Tensor) ([]float32, error) {
	var t Tape
	defer t.Release()
	y := t.Contiguous(t.ToDevice(x, gotch.CPU, gotch.Float))
	if err := t.Err(); err != nil {
		return nil, err
	}
	n := y.Numel()
	out := make([]float32, n)
	if n == 0 {
		return out, nil
	}
	if err := y.CopyData(out, n); err != nil {
		return nil, TorchError("copy_data", err)
	}
	return out, nil
}

// LiveTensors returns the number of gotch tensors not yet dropped (gotch's registry of tensors).
// Used by tests to check that an operation drops every intermediate; it reads gotch's registry
// without its lock, so call it only while no tensor is being created or dropped.
func LiveTensors() int { return len(ts.ExistingTensors) }
