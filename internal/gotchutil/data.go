package gotchutil

import (
	"fmt"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// FromBytes makes a CPU tensor of dtype and shape from raw little-endian bytes (copied once, straight
// into the tensor's storage; gotch's OfDataSize copies three times and zero-fills the storage first).
func FromBytes(data []byte, dtype gotch.DType, shape ...int64) (*ts.Tensor, error) {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	if want := n * int64(dtype.Size()); want != int64(len(data)) {
		return nil, fmt.Errorf("gotchutil: %d bytes for shape %v of %v, want %d", len(data), shape, dtype, want)
	}
	if len(shape) == 0 { // a 0-dim tensor: gotch's Empty needs at least one dimension
		x, err := ts.OfDataSize(data, shape, dtype)
		if err != nil {
			return nil, TorchError("tensor_from_data", err)
		}
		return x, nil
	}
	x, buf, err := EmptyCPU(dtype, shape...)
	if err != nil {
		return nil, err
	}
	copy(buf, data)
	return x, nil
}

// EmptyCPU makes an uninitialised contiguous CPU tensor of dtype and shape (at least one dimension)
// and returns it with its storage as a byte slice, which stays valid while the tensor lives. Filling
// the slice is how data gets into libtorch with a single copy.
func EmptyCPU(dtype gotch.DType, shape ...int64) (*ts.Tensor, []byte, error) {
	if len(shape) == 0 {
		return nil, nil, fmt.Errorf("gotchutil: EmptyCPU needs at least one dimension")
	}
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return nil, nil, fmt.Errorf("gotchutil: negative dimension in shape %v", shape)
		}
		n *= d
	}
	x, err := ts.Empty(shape, dtype, gotch.CPU)
	if err != nil {
		return nil, nil, TorchError("empty", err)
	}
	nbytes := n * int64(dtype.Size())
	if nbytes == 0 {
		return x, nil, nil
	}
	p, err := x.DataPtr()
	if err != nil || p == nil {
		_ = x.Drop()
		if err == nil {
			err = fmt.Errorf("no storage")
		}
		return nil, nil, TorchError("data_ptr", err)
	}
	return x, unsafe.Slice((*byte)(p), nbytes), nil
}

// HostBytes returns the storage of x, a contiguous CPU tensor, as a byte slice that stays valid
// while x lives (no copy).
func HostBytes(x *ts.Tensor) ([]byte, error) {
	shape, err := x.Size()
	if err != nil {
		return nil, TorchError("size", err)
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	nbytes := n * int64(x.DType().Size())
	if nbytes == 0 {
		return nil, nil
	}
	p, err := x.DataPtr()
	if err != nil || p == nil {
		if err == nil {
			err = fmt.Errorf("no storage")
		}
		return nil, TorchError("data_ptr", err)
	}
	return unsafe.Slice((*byte)(p), nbytes), nil
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
	// Not y.Numel(): it calls MustSize, which ends the process if libtorch fails.
	shape, err := y.Size()
	if err != nil {
		return nil, TorchError("size", err)
	}
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	out := make([]float32, n)
	if n == 0 {
		return out, nil
	}
	if err := y.CopyData(out, uint(n)); err != nil {
		return nil, TorchError("copy_data", err)
	}
	return out, nil
}

// LiveTensors returns the number of gotch tensors not yet dropped (gotch's registry of tensors).
// Used by tests to check that an operation drops every intermediate; it reads gotch's registry
// without its lock, so call it only while no tensor is being created or dropped.
func LiveTensors() int { return len(ts.ExistingTensors) }
