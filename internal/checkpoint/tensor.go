package checkpoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// Tensor is one named tensor of a checkpoint.
type Tensor struct {
	// Name is the state-dict key, e.g. "vision_model.vision_model.embeddings.class_embedding".
	Name string
	// DType is the element type.
	DType DType
	// Shape lists the dimensions, outermost first; an empty Shape is a scalar (one element).
	Shape []int64
	// Data holds the elements in row-major (C) order, little-endian, len(Data) == NumElements()*DType.Size().
	// It is nil in the result of Info. It is usually a read-only view into the memory-mapped file:
	// do not write to it, and do not use it after the checkpoint's Close.
	Data []byte
}

// NumElements returns the product of Shape (1 for a scalar). It assumes a validated shape, as every
// Tensor returned by this package has.
func (t Tensor) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Aligned reports whether Data starts at an address that is a multiple of align bytes (true for empty
// Data). A tensor whose memory is handed to libtorch as is (gotchutil.ViewCPU) must be aligned to its
// element size: safetensors only aligns the data section to 8 bytes and packs tensors back to back, so
// an odd-length tensor of a 2-byte dtype, for example, shifts every later one; check before viewing and
// copy what is not aligned.
func (t Tensor) Aligned(align int) bool {
	if len(t.Data) == 0 || align <= 1 {
		return true
	}
	return uintptr(unsafe.Pointer(unsafe.SliceData(t.Data)))%uintptr(align) == 0
}

// NumBytes returns NumElements()*DType.Size().
func (t Tensor) NumBytes() int64 { return t.NumElements() * int64(t.DType.Size()) }

func (t Tensor) checkData() error {
	if !t.DType.Valid() {
		return fmt.Errorf("checkpoint: tensor %q: %w: dtype %q", t.Name, ErrUnsupported, t.DType)
	}
	if n, ok := numElements(t.Shape); !ok || n > int64(len(t.Data)) || n*int64(t.DType.Size()) != int64(len(t.Data)) {
		return fmt.Errorf("checkpoint: tensor %q: %w: %d data bytes do not hold shape %v of %s",
			t.Name, ErrFormat, len(t.Data), t.Shape, t.DType)
	}
	return nil
}

// Float32 returns the elements converted to float32, in row-major order (a new slice).
// F32 is copied, F16 and BF16 are widened exactly, F64 is rounded to nearest; other dtypes are an error
// wrapping [ErrUnsupported].
func (t Tensor) Float32() ([]float32, error) {
	if err := t.checkData(); err != nil {
		return nil, err
	}
	size := t.DType.Size()
	out := make([]float32, len(t.Data)/size)
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = Float16ToFloat32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = BFloat16ToFloat32(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	default:
		return nil, fmt.Errorf("checkpoint: tensor %q: %w: cannot convert %s to float32", t.Name, ErrUnsupported, t.DType)
	}
	return out, nil
}

// Int64 returns the elements converted to int64, in row-major order (a new slice), for the integer
// dtypes I64, I32, I16, I8, U8 and BOOL; other dtypes are an error wrapping [ErrUnsupported].
func (t Tensor) Int64() ([]int64, error) {
	if err := t.checkData(); err != nil {
		return nil, err
	}
	size := t.DType.Size()
	out := make([]int64, len(t.Data)/size)
	switch t.DType {
	case I64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(t.Data[4*i:])))
		}
	case I16:
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(t.Data[2*i:])))
		}
	case I8:
		for i := range out {
			out[i] = int64(int8(t.Data[i]))
		}
	case U8, BOOL:
		for i := range out {
			out[i] = int64(t.Data[i])
		}
	default:
		return nil, fmt.Errorf("checkpoint: tensor %q: %w: cannot convert %s to int64", t.Name, ErrUnsupported, t.DType)
	}
	return out, nil
}

// numElements returns the product of shape and whether every dimension is non-negative and the
// product fits in an int64. A zero dimension makes the product 0 whatever the other dimensions are.
func numElements(shape []int64) (int64, bool) {
	zero := false
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		zero = zero || d == 0
	}
	if zero {
		return 0, true
	}
	n := int64(1)
	for _, d := range shape {
		if n > math.MaxInt64/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// byteSize returns numel*size when it fits in an int (so it can index a slice).
func byteSize(numel int64, size int) (int, bool) {
	if numel < 0 || size <= 0 || numel > int64(math.MaxInt)/int64(size) {
		return 0, false
	}
	return int(numel) * size, true
}
