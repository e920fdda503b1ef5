//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package flock

import (
	"context"
	"sync"
)

var (
	locksMu sync.Mutex
	locks   = map[string]chan struct{}{}
)

// Lock serialises downloads of the same blob between the goroutines of this process only: this
// system has no flock(2), so other processes are not excluded.
func Lock(ctx context.Context, path string) (func(), error) {
	locksMu.Lock()
	ch, ok := locks[path]
	if !ok {
		ch = make(chan struct{}, 1)
		locks[path] = ch
	}
	locksMu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
