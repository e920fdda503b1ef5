package gotchutil

/*
#include <stdint.h>
#include <stdlib.h>

// gu_of_blob calls gotch's libtch at_tensor_of_blob (f) and, when it returns NULL, takes libtch's
// thread-local last error (errf, get_and_reset_last_err) in the same C call, so that the error is
// read on the OS thread that set it. *err is NULL or a malloc'd message for the caller to free.
static void *gu_of_blob(void *f, void *errf, void *data, int64_t *dims, size_t ndims,
                        int64_t *strides, size_t nstrides, int type, int device, char **err) {
	void *t = ((void *(*)(void *, int64_t *, size_t, int64_t *, size_t, int, int))f)(
		data, dims, ndims, strides, nstrides, type, device);
	*err = NULL;
	if (t == NULL) {
		*err = ((char *(*)(void))errf)();
	}
	return t;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/sugarme/gotch"
	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// libtch symbols (gotch's C API, in its libgotchwrap.so), looked up at run time like libtorch's.
const (
	symTensorOfBlob = "at_tensor_of_blob"      // tensor at_tensor_of_blob(void*, int64_t*, size_t, int64_t*, size_t, int, int)
	symLastErr      = "get_and_reset_last_err" // char *get_and_reset_last_err(void)
)

// libtchCPU is the CPU in libtch's device numbering (device_of_int: -1 is the CPU, n ≥ 0 CUDA device n);
// gotch's Device.CInt can end the process, so it is not called.
const libtchCPU = -1

// ViewCPU makes a contiguous CPU tensor of dtype and shape (at least one dimension) that views data
// without copying it (torch::from_blob): the tensor's storage is data's memory, so a write to data is
// seen by the tensor and by every view made from it, and an in-place op on the tensor writes data.
// libtorch never frees the memory.
//
// data: exactly numel(shape)*dtype.Size() bytes, aligned to dtype.Size() (libtorch's vectorised
// kernels assume element alignment). A wrong length, a misaligned start, a negative dimension or an
// empty shape is an error; a shape with no elements gives an ordinary empty tensor that views nothing.
//
// Lifetime rule: the memory must stay valid and unmoved until every tensor viewing it has been
// dropped — the returned tensor, every view derived from it (Select, Narrow, Reshape, Transpose, …:
// they share the storage), and any tensor an op returned as an alias of its input. Results of ops that
// compute (matmul, linear, add, …) own new storage and are not bound by it. How the caller guarantees it:
//
//   - Memory outside the Go heap (a memory-mapped file, C.malloc): keep the mapping open until the
//     tensors are dropped, e.g. by dropping them (Tape.Release, Runtime.Close) before unmapping, on
//     the same worker thread. Pin is a no-op for it.
//   - Go heap memory: cgo forbids C from keeping a Go pointer after the call unless it is pinned, and
//     the garbage collector frees memory nothing in Go refers to. ViewCPU pins data's backing array on
//     pin; the caller keeps pin (and with it the memory) until the tensors are dropped, then calls
//     pin.Unpin.
//
// pin may be nil only for memory outside the Go heap.
func ViewCPU(pin *runtime.Pinner, data []byte, dtype gotch.DType, shape ...int64) (*ts.Tensor, error) {
	if len(shape) == 0 {
		return nil, errors.New("gotchutil: ViewCPU needs at least one dimension")
	}
	size := int64(dtype.Size())
	if size <= 0 {
		return nil, fmt.Errorf("gotchutil: ViewCPU: dtype %v has no element size", dtype)
	}
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("gotchutil: ViewCPU: negative dimension in shape %v", shape)
		}
		n *= d
	}
	if n*size != int64(len(data)) {
		return nil, fmt.Errorf("gotchutil: ViewCPU: %d bytes for shape %v of %v, want %d", len(data), shape, dtype, n*size)
	}
	if n == 0 {
		x, err := ts.Empty(shape, dtype, gotch.CPU)
		return x, TorchError("empty", err)
	}
	p := unsafe.Pointer(unsafe.SliceData(data))
	if uintptr(p)%uintptr(size) != 0 {
		return nil, fmt.Errorf("gotchutil: ViewCPU: data at %#x is not aligned to the %d-byte elements of %v", uintptr(p), size, dtype)
	}
	f, errf := lookup(symTensorOfBlob), lookup(symLastErr)
	if f == nil || errf == nil {
		return nil, errors.New("gotchutil: at_tensor_of_blob not found in the loaded gotch libtch")
	}
	// Contiguous strides, in elements; both arrays live in C memory for the call.
	dims := (*[1 << 20]C.int64_t)(C.malloc(C.size_t(16 * len(shape))))[: 2*len(shape) : 2*len(shape)]
	defer C.free(unsafe.Pointer(&dims[0]))
	stride := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		dims[i] = C.int64_t(shape[i])
		dims[len(shape)+i] = C.int64_t(stride)
		stride *= shape[i]
	}
	var cerr *C.char
	t := C.gu_of_blob(f, errf, p, &dims[0], C.size_t(len(shape)), &dims[len(shape)], C.size_t(len(shape)),
		C.int(dtype.CKind()), libtchCPU, &cerr)
	if t == nil {
		msg := "at_tensor_of_blob returned no tensor"
		if cerr != nil {
			msg = C.GoString(cerr)
			C.free(unsafe.Pointer(cerr))
		}
		return nil, TorchError("from_blob", errors.New(msg))
	}
	if pin != nil {
		pin.Pin(p) // data, still referenced here, cannot have been freed before this
	}
	return ts.New(lib.Ctensor(t)), nil
}
