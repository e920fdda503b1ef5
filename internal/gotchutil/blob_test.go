package gotchutil

import (
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/sugarme/gotch"
)

// TestViewCPUSharesMemory: the tensor's storage is the caller's memory — same values, same address,
// and a write on either side is seen on the other.
func TestViewCPUSharesMemory(t *testing.T) {
	w, err := NewWorker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	data := []float32{1, 2, 3, 4, 5, 6}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*len(data))
	var pin runtime.Pinner
	defer pin.Unpin()
	err = w.Do(func() error {
		var tp Tape
		defer tp.Release()
		x, err := ViewCPU(&pin, b, gotch.Float, 2, 3)
		x = tp.Record("view", x, err)
		if err := tp.Err(); err != nil {
			return err
		}
		if p, err := x.DataPtr(); err != nil || p != unsafe.Pointer(&data[0]) {
			t.Errorf("data_ptr = %p (%v), want the Go slice's %p", p, err, &data[0])
		}
		got, err := Float32s(x)
		if err != nil {
			return err
		}
		if !equal(got, data) {
			t.Errorf("view = %v, want %v", got, data)
		}
		data[4] = 50 // Go → tensor, and through a view derived from it
		col := tp.Select(x, 1, 1)
		if got, err = Float32s(col); err != nil {
			return err
		}
		if want := []float32{2, 50}; !equal(got, want) {
			t.Errorf("after a Go write, column 1 = %v, want %v", got, want)
		}
		half := tp.Float32([]float32{3.5, 3.5, 3.5, 3.5, 3.5, 3.5}, 2, 3)
		tp.AddOut(x, half, half) // tensor → Go: an op writing into the view
		if err := tp.Err(); err != nil {
			return err
		}
		if want := []float32{7, 7, 7, 7, 7, 7}; !equal(data, want) {
			t.Errorf("after fill_ on the tensor, Go memory = %v, want %v", data, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestViewCPUMapped views memory outside the Go heap (an anonymous mapping) without a pinner.
func TestViewCPUMapped(t *testing.T) {
	m, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	defer syscall.Munmap(m)
	f := unsafe.Slice((*float32)(unsafe.Pointer(&m[0])), 1024)
	for i := range f {
		f[i] = float32(i)
	}
	w, err := NewWorker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = w.Do(func() error {
		var tp Tape
		defer tp.Release() // before the deferred Munmap: the lifetime rule
		x, err := ViewCPU(nil, m, gotch.Float, 32, 32)
		x = tp.Record("view", x, err)
		y := tp.Transpose(x, 0, 1) // a derived view of the mapping
		if err := tp.Err(); err != nil {
			return err
		}
		got, err := Float32s(y)
		if err != nil {
			return err
		}
		if len(got) != 1024 || got[1] != 32 || got[32] != 1 || got[1023] != 1023 {
			t.Errorf("transposed mapped view: %d values, [1]=%v [32]=%v [1023]=%v, want 1024, 32, 1, 1023",
				len(got), got[1], got[32], got[1023])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestViewCPUErrors(t *testing.T) {
	buf := make([]byte, 64)
	cases := []struct {
		name  string
		data  []byte
		dtype gotch.DType
		shape []int64
		want  string
	}{
		{"no dimensions", buf[:4], gotch.Float, nil, "at least one dimension"},
		{"too few bytes", buf[:20], gotch.Float, []int64{2, 3}, "20 bytes for shape [2 3]"},
		{"too many bytes", buf[:28], gotch.Float, []int64{2, 3}, "28 bytes for shape [2 3]"},
		{"negative dimension", buf[:8], gotch.Float, []int64{-2, -1}, "negative dimension"},
		{"misaligned", buf[1:9], gotch.Float, []int64{2}, "not aligned to the 4-byte elements"},
		{"misaligned float64", buf[4:12], gotch.Double, []int64{1}, "not aligned to the 8-byte elements"},
	}
	w, err := NewWorker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var pin runtime.Pinner
			defer pin.Unpin()
			err := w.Do(func() error {
				x, err := ViewCPU(&pin, c.data, c.dtype, c.shape...)
				if x != nil {
					x.Drop()
				}
				return err
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
	// A shape with no elements is a valid empty tensor that views nothing.
	err = w.Do(func() error {
		x, err := ViewCPU(nil, nil, gotch.Float, 0, 3)
		if err != nil {
			return err
		}
		defer x.Drop()
		if sz, err := x.Size(); err != nil || len(sz) != 2 || sz[0] != 0 || sz[1] != 3 {
			t.Errorf("empty view has shape %v (%v), want [0 3]", sz, err)
		}
		return nil
	})
	if err != nil {
		t.Errorf("empty shape: %v", err)
	}
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
