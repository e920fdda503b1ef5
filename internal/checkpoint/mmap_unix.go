//go:build unix

package checkpoint

import (
	"fmt"
	"math"
	"os"
	"syscall"
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
