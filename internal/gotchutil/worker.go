package gotchutil

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/sugarme/gotch/ts"
)

// ErrClosed is returned by [Worker.Do] after [Worker.Close].
var ErrClosed = errors.New("gotchutil: worker closed")

// Worker runs functions one at a time on a single goroutine locked to its OS thread, with libtorch's
// gradient tracking switched off on that thread. It is safe for concurrent use: calls of Do from many
// goroutines are serialised.
type Worker struct {
	jobs chan job
	mu   sync.RWMutex // guards closed and the send on jobs
	done chan struct{}

	closed bool
}

type job struct {
	fn  func() error
	res chan error
}

// NewWorker starts a worker thread.
func NewWorker() (*Worker, error) {
	w := &Worker{jobs: make(chan job), done: make(chan struct{})}
	started := make(chan error, 1)
	go w.loop(started)
	if err := <-started; err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Worker) loop(started chan<- error) {
	// The thread stays locked for the worker's life and is discarded when the goroutine exits,
	// so no other goroutine ever inherits its libtorch thread-local state.
	runtime.LockOSThread()
	defer close(w.done)
	if _, err := ts.GradSetEnabled(false); err != nil {
		started <- fmt.Errorf("gotchutil: disable grad mode: %w", err)
		return
	}
	started <- nil
	for j := range w.jobs {
		j.res <- run(j.fn)
	}
}

// run calls fn, turning a panic (a bug, or gotch panicking on bad input) into an error so that
// one bad call cannot take the process down.
func run(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("gotchutil: panic in worker: %v", r)
		}
	}()
	return fn()
}

// Do runs fn on the worker thread and returns its error. Calls are serialised in arrival order.
func (w *Worker) Do(fn func() error) error {
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrClosed
	}
	res := make(chan error, 1)
	w.jobs <- job{fn: fn, res: res}
	w.mu.RUnlock()
	return <-res
}

// Close stops the worker after the calls already queued have run. Later calls of Do return
// [ErrClosed]. Close is idempotent.
func (w *Worker) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.jobs)
	}
	w.mu.Unlock()
	<-w.done
}
