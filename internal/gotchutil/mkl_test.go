package gotchutil

import (
	"os"
	"testing"
)

func TestMKLDispatch(t *testing.T) {
	real := mklRealAnswer()
	if real < 0 {
		t.Skip("this libtorch exports no mkl_serv_intel_cpu_true (no MKL linked in)")
	}
	auto := mklAutoAnswer()
	old, had := os.LookupEnv(MKLIntelPathEnv)
	t.Cleanup(func() {
		if had {
			os.Setenv(MKLIntelPathEnv, old)
		} else {
			os.Unsetenv(MKLIntelPathEnv)
		}
		mklReread()
	})
	cases := []struct {
		env   string // "" unset
		intel bool
	}{
		{"", real == 1 || auto},
		{"0", real == 1},
		{"yes", real == 1 || auto}, // not "0" or "1": as if unset
		{"1", true},
	}
	for _, c := range cases {
		if c.env == "" {
			os.Unsetenv(MKLIntelPathEnv)
		} else {
			os.Setenv(MKLIntelPathEnv, c.env)
		}
		mklReread()
		interposed, intel := MKLDispatch()
		if !interposed {
			t.Fatalf("%s=%q: MKL's check is not bound to this package's function", MKLIntelPathEnv, c.env)
		}
		if intel != c.intel {
			t.Errorf("%s=%q: MKL is told intel=%v, want %v (its own answer: %d)", MKLIntelPathEnv, c.env, intel, c.intel, real)
		}
	}
}
