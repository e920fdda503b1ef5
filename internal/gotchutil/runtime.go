package gotchutil

import (
	"errors"
	"sync/atomic"
)

// Runtime is what every libtorch-backed model of this module holds: the worker thread its libtorch
// calls run on, the tensors it owns, and whether it has been closed. It is safe for concurrent use.
type Runtime struct {
	worker *Worker
	// Owned records the tensors the model keeps (its weights). Touch it only inside Run.
	Owned   Tape
	dropped bool // worker thread only: Owned has been released
	closed  atomic.Bool
}

// NewRuntime starts a model's worker thread.
func NewRuntime() (*Runtime, error) {
	w, err := NewWorker()
	if err != nil {
		return nil, err
	}
	return &Runtime{worker: w}, nil
}

// Closed reports whether Close has been called.
func (r *Runtime) Closed() bool { return r.closed.Load() }

// Run runs fn on the worker thread. Once Close has released the owned tensors it returns [ErrClosed]
// without running fn, so fn never sees freed weights.
func (r *Runtime) Run(fn func() error) error {
	return r.worker.Do(func() error {
		if r.dropped {
			return ErrClosed
		}
		return fn()
	})
}

// Close releases the owned tensors after the calls already queued, and stops the worker. Later
// calls of Run return [ErrClosed]. Close is idempotent.
func (r *Runtime) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	err := r.worker.Do(func() error {
		r.Owned.Release()
		r.dropped = true
		return nil
	})
	r.worker.Close()
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return err
}
