//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package hub

import "os"

// IsTerminal reports whether f is a terminal. On this system it is not detected and always false.
func IsTerminal(f *os.File) bool { return false }
