package gotchutil

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

static void *gu_sym(const char *name) { return dlsym(RTLD_DEFAULT, name); }
static void gu_call_void_int(void *f, int n) { ((void (*)(int))f)(n); }
static int gu_call_int(void *f) { return ((int (*)(void))f)(); }
static const char *gu_call_str(void *f) { return ((const char *(*)(void))f)(); }
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// libtorch symbols looked up at run time, so that this package links against any gotch build
// (the one configured by this project, or upstream gotch compiled the usual way).
const (
	symSetNumThreads = "_ZN2at15set_num_threadsEi" // at::set_num_threads(int)
	symGetNumThreads = "_ZN2at15get_num_threadsEv" // at::get_num_threads()
	symBuildInfo     = "gotchsafety_build_info"    // written by cmd/safety-setup (internal/setup)
)

func lookup(name string) unsafe.Pointer {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	return C.gu_sym(cs)
}

// SetNumThreads sets libtorch's intra-op thread count (at::set_num_threads). Call it from the
// thread that runs the model (see [Worker]); n must be positive.
func SetNumThreads(n int) error {
	if n <= 0 {
		return fmt.Errorf("gotchutil: thread count must be positive, got %d", n)
	}
	f := lookup(symSetNumThreads)
	if f == nil {
		return errors.New("gotchutil: at::set_num_threads not found in the loaded libtorch")
	}
	C.gu_call_void_int(f, C.int(n))
	return nil
}

// NumThreads returns libtorch's intra-op thread count as seen from the calling thread, or 0 when the
// symbol is not found.
func NumThreads() int {
	f := lookup(symGetNumThreads)
	if f == nil {
		return 0
	}
	return int(C.gu_call_int(f))
}

func buildInfoJSON() string {
	f := lookup(symBuildInfo)
	if f == nil {
		return ""
	}
	return C.GoString(C.gu_call_str(f))
}
