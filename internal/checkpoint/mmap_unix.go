//go:build unix

package checkpoint

import (
	"fmt"
	"math"
	"os"
	"syscall"
	"unsafe"
)

// mapping is a whole file, read-only: memory-mapped on unix.
type mapping struct {
	data    []byte
	mmapped bool
}

// mapFile maps the file at path read-only. An empty file gives an empty, unmapped mapping (mmap
// refuses length 0). The descriptor is closed before returning; the mapping stays valid.
func mapFile(path string) (*mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("checkpoint: %s: %w: not a regular file", path, ErrFormat)
	}
	size := st.Size()
	if size == 0 {
		return &mapping{}, nil
	}
	if size > math.MaxInt {
		return nil, fmt.Errorf("checkpoint: %s: %w: file of %d bytes cannot be mapped", path, ErrUnsupported, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: mmap: %w", path, err)
	}
	return &mapping{data: data, mmapped: true}, nil
}

// close unmaps the file; slices into it must not be used afterwards. It is idempotent.
func (m *mapping) close() error {
	if m == nil || !m.mmapped {
		if m != nil {
			m.data = nil
		}
		return nil
	}
	data := m.data
	m.data, m.mmapped = nil, false
	return syscall.Munmap(data)
}

// release drops the whole pages inside b, a slice of the mapping, from the process's resident set
// (madvise MADV_DONTNEED on a read-only shared file mapping): the page cache keeps them, and a later
// read faults them back in with the same content. A slice that does not lie inside the mapping (a
// copy) is left alone. Call it while the mapping is open.
func (m *mapping) release(b []byte) {
	if m == nil || !m.mmapped || len(b) == 0 || len(m.data) == 0 {
		return
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m.data)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if p < base || p+uintptr(len(b)) > base+uintptr(len(m.data)) {
		return
	}
	page := uintptr(os.Getpagesize())
	lo := (p + page - 1) &^ (page - 1)
	hi := (p + uintptr(len(b))) &^ (page - 1)
	if hi <= lo {
		return
	}
	_ = syscall.Madvise(b[lo-p:hi-p], syscall.MADV_DONTNEED)
}

// madvPopulateWrite is Linux's MADV_POPULATE_WRITE (5.14+): fault pages in, writable, in one call.
const madvPopulateWrite = 23

// PrefaultWrite asks the kernel to back the whole pages inside b (fresh memory about to be filled,
// e.g. a tensor's storage) with writable pages in one call, instead of one page fault per 4 KiB page
// during the copy that follows. It is only advice: where the kernel does not support it, nothing
// happens and the copy faults the pages in as usual.
func PrefaultWrite(b []byte) {
	if len(b) == 0 {
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	page := uintptr(os.Getpagesize())
	lo := (p + page - 1) &^ (page - 1)
	hi := (p + uintptr(len(b))) &^ (page - 1)
	if hi <= lo {
		return
	}
	_ = syscall.Madvise(b[lo-p:hi-p], madvPopulateWrite)
}
