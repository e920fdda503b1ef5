package hub

import (
	"os"
	"syscall"
	"unsafe"
)

// IsTerminal reports whether f is a terminal (the TCGETS ioctl succeeds on it), e.g. to show a
// [TextProgress] bar only when stderr is a terminal.
func IsTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	sc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	err = sc.Control(func(fd uintptr) {
		var t syscall.Termios
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
		ok = errno == 0
	})
	return err == nil && ok
}
