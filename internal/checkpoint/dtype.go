package checkpoint

import "math"

// DType is the element type of a tensor, spelled as in the safetensors format.
type DType string

// The element types this package reads. F32, F16, BF16 and I64 are the ones model weights use;
// the others are accepted so that every tensor of a checkpoint can at least be listed and read raw.
const (
	F64  DType = "F64"  // IEEE 754 binary64, 8 bytes
	F32  DType = "F32"  // IEEE 754 binary32, 4 bytes
	F16  DType = "F16"  // IEEE 754 binary16 (half), 2 bytes
	BF16 DType = "BF16" // bfloat16: the upper 16 bits of a binary32, 2 bytes
	I64  DType = "I64"  // signed 64-bit integer, 8 bytes
	I32  DType = "I32"  // signed 32-bit integer, 4 bytes
	I16  DType = "I16"  // signed 16-bit integer, 2 bytes
	I8   DType = "I8"   // signed 8-bit integer, 1 byte
	U8   DType = "U8"   // unsigned 8-bit integer, 1 byte
	BOOL DType = "BOOL" // boolean, 1 byte (0 or 1)
)

// Size returns the size of one element in bytes, or 0 for a dtype this package does not know.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, BOOL:
		return 1
	}
	return 0
}

// Valid reports whether d is one of the dtypes this package reads.
func (d DType) Valid() bool { return d.Size() != 0 }

// IsFloat reports whether d is a floating-point dtype (F64, F32, F16, BF16).
func (d DType) IsFloat() bool {
	return d == F64 || d == F32 || d == F16 || d == BF16
}

// String returns the safetensors spelling of d.
func (d DType) String() string { return string(d) }

// Float16ToFloat32 converts an IEEE 754 binary16 value, given by its bits, to float32 exactly:
// subnormals become normal float32 values, infinities stay infinite and NaNs stay NaN (payload kept).
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // infinity or NaN
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	case exp != 0: // normal: rebias the exponent from 15 to 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// Subnormal: the value is mant * 2^-24. Shift the mantissa up until its leading one reaches the
	// implicit-bit position, lowering the exponent once per shift.
	e := uint32(127 - 14)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// BFloat16ToFloat32 converts a bfloat16 value, given by its bits, to float32 (exact: a bfloat16 is the
// upper half of a float32).
func BFloat16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}
