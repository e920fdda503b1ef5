package checkpoint

import (
	"encoding/binary"
	"fmt"
)

// FirstNonFinite returns the index of the first NaN or ±Inf element of a float tensor, or -1 (also
// for non-float dtypes). It tests the exponent bits of the little-endian data: all ones is NaN or Inf
// in every IEEE format (and in bfloat16).
func FirstNonFinite(tn Tensor) int {
	switch tn.DType {
	case F32:
		return scanExponents(tn.Data, 4, 0x7f800000)
	case F16:
		return scanExponents(tn.Data, 2, 0x7c00)
	case BF16:
		return scanExponents(tn.Data, 2, 0x7f80)
	case F64:
		return scanExponents(tn.Data, 8, 0x7ff0000000000000)
	}
	return -1
}

// scanExponents returns the index of the first size-byte little-endian element of d whose exp bits
// are all set, or -1. It tests 32 bytes per step: in each 64-bit word, every lane's exponent bits
// plus their lowest bit carry into the lane's top bit exactly when they are all ones (lanes cannot
// carry into each other); a hit is then located element by element.
func scanExponents(d []byte, size int, exp uint64) int {
	var mask, carry, top uint64
	for lane := 0; lane < 8; lane += size {
		shift := uint(8 * lane)
		mask |= exp << shift
		carry |= (exp & -exp) << shift
		top |= uint64(1) << (shift + uint(8*size) - 1)
	}
	hit := func(w uint64) uint64 { return ((w & mask) + carry) & top }
	i := 0
	for ; i+32 <= len(d); i += 32 {
		b := d[i : i+32 : i+32]
		if hit(binary.LittleEndian.Uint64(b[0:]))|hit(binary.LittleEndian.Uint64(b[8:]))|
			hit(binary.LittleEndian.Uint64(b[16:]))|hit(binary.LittleEndian.Uint64(b[24:])) != 0 {
			break
		}
	}
	for ; i+size <= len(d); i += size {
		var v uint64
		switch size {
		case 2:
			v = uint64(binary.LittleEndian.Uint16(d[i:]))
		case 4:
			v = uint64(binary.LittleEndian.Uint32(d[i:]))
		default:
			v = binary.LittleEndian.Uint64(d[i:])
		}
		if v&exp == exp {
			return i / size
		}
	}
	return -1
}

// NonFiniteName names the non-finite element at the start of b ("NaN", "+Inf" or "-Inf").
func NonFiniteName(d DType, b []byte) string {
	one := Tensor{DType: d, Shape: []int64{1}, Data: b[:d.Size()]}
	if v, err := one.Float32(); err == nil && len(v) == 1 {
		return fmt.Sprint(v[0])
	}
	return "not finite"
}
