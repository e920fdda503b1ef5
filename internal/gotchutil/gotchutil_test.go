package gotchutil

import (
	"errors"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
)

// TestSmokeMatmul runs a tensor op through gotch on the CPU and reports the libtorch version.
func TestSmokeMatmul(t *testing.T) {
	w, err := NewWorker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var got []float32
	err = w.Do(func() error {
		var tp Tape
		defer tp.Release()
		a := tp.Float32([]float32{1, 2, 3, 4, 5, 6}, 6)
		b := tp.Float32([]float32{1, 0, 0, 1, 1, 1}, 6)
		a = tp.Reshape(a, 2, 3)
		b = tp.Reshape(b, 3, 2)
		c := tp.Matmul(a, b)
		if err := tp.Err(); err != nil {
			return err
		}
		got, err = Float32s(c)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{4, 5, 10, 11}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("matmul = %v, want %v", got, want)
		}
	}
	b := Build()
	t.Logf("libtorch %q (known=%v, cuda=%v), %d of %d wrappers stubbed, %d threads",
		b.Libtorch, b.Known, b.CUDA, len(b.StubbedOps), b.GeneratedWrappers, NumThreads())
	if b.Known && b.Libtorch == "" {
		t.Error("build info has no libtorch version")
	}
}

func TestTapeStickyError(t *testing.T) {
	w, err := NewWorker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = w.Do(func() error {
		var tp Tape
		defer tp.Release()
		a := tp.Float32([]float32{1, 2, 3}, 3)
		b := tp.Float32([]float32{1, 2}, 2)
		c := tp.Add(a, b) // shapes [3] and [2] do not broadcast
		if c != nil {
			t.Error("failed op returned a tensor")
		}
		if d := tp.Add(a, a); d != nil {
			t.Error("op after a failure ran")
		}
		return tp.Err()
	})
	if !errors.Is(err, ErrTorch) || !strings.Contains(err.Error(), "add") {
		t.Fatalf("error = %v, want an add failure wrapping ErrTorch", err)
	}
	if strings.Contains(err.Error(), "goroutine ") {
		t.Errorf("error carries a Go stack trace: %q", err)
	}
}

func TestThreads(t *testing.T) {
	w, err := NewWorker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = w.Do(func() error {
		if err := SetNumThreads(1); err != nil {
			return err
		}
		if n := NumThreads(); n != 1 {
			t.Errorf("NumThreads = %d after SetNumThreads(1)", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := SetNumThreads(0); err == nil {
		t.Error("SetNumThreads(0) succeeded")
	}
}

func TestWorkerClosed(t *testing.T) {
	w, err := NewWorker()
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	w.Close()
	if err := w.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close = %v", err)
	}
	_ = gotch.CPU
}

func TestSDPAProbe(t *testing.T) {
	w, err := NewWorker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var ok bool
	_ = w.Do(func() error { ok = SDPAWorks(); return nil })
	t.Logf("scaled_dot_product_attention usable: %v (libtorch %q)", ok, Build().Libtorch)
	if Build().Known && Build().Libtorch >= "2.1" && !ok {
		t.Error("the configured build has a working scaled_dot_product_attention on libtorch >= 2.1, but the probe failed")
	}
}
