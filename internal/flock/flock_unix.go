//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package flock

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// Lock takes an exclusive flock(2) on path, creating it if needed, and returns the function that
// releases it. This is the lock huggingface_hub takes through the filelock package, so Go and Python
// processes exclude each other. It waits, polling, until the lock is free or ctx is done. The lock
// file is left in place (removing it would race with other holders).
func Lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	sc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	try := func(how int) error {
		var ferr error
		if err := sc.Control(func(fd uintptr) { ferr = syscall.Flock(int(fd), how) }); err != nil {
			return err
		}
		return ferr
	}
	delay := 10 * time.Millisecond
	for {
		err := try(syscall.LOCK_EX | syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = try(syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}
