package checkpoint

import (
	"encoding/binary"
	"math"
	"testing"
)

// TestFirstNonFinite checks the exponent scan on every float dtype: a NaN, +Inf or −Inf at positions
// inside the 32-byte blocks, at block edges and in the tail is found at its index; the largest finite
// values (all exponent bits but one set), subnormals and negative values are not hits.
func TestFirstNonFinite(t *testing.T) {
	type kind struct {
		dtype DType
		size  int
		// bits of: a finite filler that is hard for the scan (largest finite, negative), NaN, +Inf, −Inf
		finite, nan, posInf, negInf uint64
	}
	kinds := []kind{
		{F32, 4, uint64(math.Float32bits(-math.MaxFloat32)), 0x7fc00000, 0x7f800000, 0xff800000},
		{F64, 8, math.Float64bits(-math.MaxFloat64), 0x7ff8000000000000, 0x7ff0000000000000, 0xfff0000000000000},
		{F16, 2, 0xfbff, 0x7e00, 0x7c00, 0xfc00},
		{BF16, 2, 0xff7f, 0x7fc0, 0x7f80, 0xff80},
	}
	put := func(b []byte, size int, v uint64) {
		switch size {
		case 2:
			binary.LittleEndian.PutUint16(b, uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(b, uint32(v))
		default:
			binary.LittleEndian.PutUint64(b, v)
		}
	}
	for _, k := range kinds {
		for _, n := range []int{0, 1, 3, 16, 17, 33, 100} {
			// No hit: largest finite negatives alternating with a subnormal (1) and zero.
			data := make([]byte, n*k.size)
			for i := range n {
				put(data[i*k.size:], k.size, []uint64{k.finite, 1, 0}[i%3])
			}
			if got := FirstNonFinite(Tensor{DType: k.dtype, Data: data}); got != -1 {
				t.Errorf("%s n=%d finite: %d, want -1", k.dtype, n, got)
			}
			for _, pos := range []int{0, 1, 32/k.size - 1, 32 / k.size, n - 1} {
				if pos < 0 || pos >= n {
					continue
				}
				for name, bad := range map[string]uint64{"NaN": k.nan, "+Inf": k.posInf, "-Inf": k.negInf} {
					d := append([]byte(nil), data...)
					put(d[pos*k.size:], k.size, bad)
					if pos+1 < n { // a second hit later must not hide the first
						put(d[(n-1)*k.size:], k.size, bad)
					}
					tn := Tensor{DType: k.dtype, Shape: []int64{int64(n)}, Data: d}
					if got := FirstNonFinite(tn); got != pos {
						t.Errorf("%s n=%d %s at %d: found at %d", k.dtype, n, name, pos, got)
					}
					if got := NonFiniteName(k.dtype, d[pos*k.size:]); got != name {
						t.Errorf("%s %s: named %q", k.dtype, name, got)
					}
				}
			}
		}
	}
	if got := FirstNonFinite(Tensor{DType: I64, Data: make([]byte, 64)}); got != -1 {
		t.Errorf("int64: %d, want -1 (not a float type)", got)
	}
}
