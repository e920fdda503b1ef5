//go:build !unix

package checkpoint

import (
	"fmt"
	"os"
)

// mapping is a whole file, read-only: read into memory where mmap is not available.
type mapping struct {
	data []byte
}

// mapFile reads the file at path into memory.
func mapFile(path string) (*mapping, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("checkpoint: %s: %w: not a regular file", path, ErrFormat)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return &mapping{data: data}, nil
}

// close drops the data. It is idempotent.
func (m *mapping) close() error {
	if m != nil {
		m.data = nil
	}
	return nil
}

// release does nothing: the file was read into memory.
func (m *mapping) release(b []byte) {}

// PrefaultWrite does nothing on this platform (see the unix version).
func PrefaultWrite(b []byte) {}
