package checkpoint

import (
	"fmt"
	"runtime/debug"
)

// addrError is what the runtime panics with when a goroutine with SetPanicOnFault faults on a memory
// access (SIGBUS or SIGSEGV at a known address).
type addrError interface {
	error
	Addr() uintptr
}

// GuardFault runs fn on the calling goroutine with debug.SetPanicOnFault on, and turns a memory fault
// into an error wrapping [ErrFormat]. Tensor data is usually a view into the memory-mapped file: if the
// file is truncated while it is being read (a new checkpoint copied over the old one in place), reading
// a page past the new end raises SIGBUS, which would otherwise kill the process. Call it around every
// read of tensor data, on each goroutine that reads (the setting is per goroutine). Other panics are
// passed on unchanged.
func GuardFault(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			ae, ok := r.(addrError)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("checkpoint: %s: %w: memory fault reading the mapped file at %#x (was it truncated or replaced "+
				"while being read? write a new checkpoint to a new file and rename it over the old one): %v", path, ErrFormat, ae.Addr(), ae)
		}
	}()
	return fn()
}
