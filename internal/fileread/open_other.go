//go:build !unix

package fileread

import "os"

// openNonBlocking opens path read-only (no named pipes to block on here).
func openNonBlocking(path string) (*os.File, error) { return os.Open(path) }
