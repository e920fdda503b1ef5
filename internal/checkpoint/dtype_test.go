package checkpoint

import (
	"errors"
	"math"
	"testing"
)

// refHalf computes a binary16 value from its fields with math.Ldexp, independently of Float16ToFloat32.
func refHalf(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(mant, -24)
	case 0x1f:
		if mant == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(1+mant/1024, exp-15)
}

func TestFloat16ToFloat32Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := Float16ToFloat32(h)
		want := refHalf(h)
		switch {
		case math.IsNaN(want):
			if !math.IsNaN(float64(got)) {
				t.Fatalf("%#04x: got %v, want NaN", h, got)
			}
		case float64(got) != want:
			t.Fatalf("%#04x: got %v, want %v", h, got, want)
		case math.Signbit(float64(got)) != (h&0x8000 != 0):
			t.Fatalf("%#04x: sign of %v is wrong", h, got)
		}
	}
	for _, c := range []struct {
		h    uint16
		want float32
	}{
		{0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0001, 5.960464477539063e-08},
		{0x0400, 6.103515625e-05}, {0x03ff, 6.097555160522461e-05}, {0x3555, 0.333251953125},
	} {
		if got := Float16ToFloat32(c.h); got != c.want {
			t.Errorf("Float16ToFloat32(%#04x) = %v, want %v", c.h, got, c.want)
		}
	}
	if !math.IsInf(float64(Float16ToFloat32(0x7c00)), 1) || !math.IsInf(float64(Float16ToFloat32(0xfc00)), -1) {
		t.Error("infinities")
	}
}

func TestBFloat16ToFloat32(t *testing.T) {
	for _, c := range []struct {
		b    uint16
		want float64
	}{
		{0x3f80, 1}, {0xbf00, -0.5}, {0x4040, 3}, {0x0001, float64(math.Float32frombits(0x00010000))},
		{0x7f80, math.Inf(1)}, {0xff80, math.Inf(-1)}, {0x0000, 0},
	} {
		if got := BFloat16ToFloat32(c.b); float64(got) != c.want {
			t.Errorf("BFloat16ToFloat32(%#04x) = %v, want %v", c.b, got, c.want)
		}
	}
	if !math.IsNaN(float64(BFloat16ToFloat32(0x7fc0))) {
		t.Error("NaN")
	}
}

func TestDTypeSize(t *testing.T) {
	want := map[DType]int{F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, "U16": 0, "": 0}
	for d, n := range want {
		if d.Size() != n || d.Valid() != (n != 0) {
			t.Errorf("%q: Size %d Valid %v, want %d", d, d.Size(), d.Valid(), n)
		}
	}
}

func TestTensorConversions(t *testing.T) {
	f := Tensor{Name: "f", DType: F32, Shape: []int64{2}, Data: f32Bytes(1.5, -2)}
	if got := mustFloat32(t, f); got[0] != 1.5 || got[1] != -2 {
		t.Errorf("F32: %v", got)
	}
	h := Tensor{Name: "h", DType: F16, Shape: []int64{2}, Data: []byte{0x00, 0x3c, 0x00, 0xc0}}
	if got := mustFloat32(t, h); got[0] != 1 || got[1] != -2 {
		t.Errorf("F16: %v", got)
	}
	b := Tensor{Name: "b", DType: BF16, Shape: []int64{1}, Data: []byte{0x80, 0x3f}}
	if got := mustFloat32(t, b); got[0] != 1 {
		t.Errorf("BF16: %v", got)
	}
	i := Tensor{Name: "i", DType: I64, Shape: []int64{1, 2}, Data: i64Bytes(-3, 1<<40)}
	if got, err := i.Int64(); err != nil || got[0] != -3 || got[1] != 1<<40 {
		t.Errorf("I64: %v %v", got, err)
	}
	if _, err := i.Float32(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("I64.Float32: %v", err)
	}
	if _, err := f.Int64(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("F32.Int64: %v", err)
	}
	short := Tensor{Name: "s", DType: F32, Shape: []int64{3}, Data: f32Bytes(1)}
	if _, err := short.Float32(); !errors.Is(err, ErrFormat) {
		t.Errorf("short data: %v", err)
	}
	scalar := Tensor{Name: "s", DType: I8, Shape: nil, Data: []byte{0xff}}
	if got, err := scalar.Int64(); err != nil || len(got) != 1 || got[0] != -1 {
		t.Errorf("scalar: %v %v", got, err)
	}
}

func TestNumElements(t *testing.T) {
	for _, c := range []struct {
		shape []int64
		n     int64
		ok    bool
	}{
		{nil, 1, true}, {[]int64{2, 3}, 6, true}, {[]int64{0, 5}, 0, true}, {[]int64{-1}, 0, false},
		{[]int64{1 << 40, 1 << 40}, 0, false}, {[]int64{1 << 40, 1 << 40, 0}, 0, true}, {[]int64{0, -1}, 0, false},
	} {
		n, ok := numElements(c.shape)
		if n != c.n || ok != c.ok {
			t.Errorf("numElements(%v) = %d, %v; want %d, %v", c.shape, n, ok, c.n, c.ok)
		}
	}
}
