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
	holds   []func() error // worker thread only: called after Owned is released (Hold)
	dropped bool           // worker thread only: Owned has been released
	closed  atomic.Bool
}

// NewRuntime starts a model's worker thread. The first call also tunes glibc's allocator for
// libtorch's activations ([TuneMalloc]).
func NewRuntime() (*Runtime, error) {
	TuneMalloc()
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

// Hold registers release (a retained memory mapping's, which owned tensors view: see [ViewCPU]) to be
// called at Close on the worker thread after every owned tensor has been dropped, in the reverse order
// of registration. Call it only inside Run.
func (r *Runtime) Hold(release func() error) { r.holds = append(r.holds, release) }

// Close releases the owned tensors after the calls already queued, then what Hold registered, and
// stops the worker. Later calls of Run return [ErrClosed]. Close is idempotent; its error is a
// release's.
func (r *Runtime) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	err := r.worker.Do(func() error {
		r.Owned.Release()
		r.dropped = true
		var errs []error
		for i := len(r.holds) - 1; i >= 0; i-- {
			errs = append(errs, r.holds[i]())
		}
		r.holds = nil
		return errors.Join(errs...)
	})
	r.worker.Close()
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return err
}
