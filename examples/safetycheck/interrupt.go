package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
)

// errInterrupted is the cause of the context's cancellation after Ctrl-C, and the error of every
// input the command did not get to.
var errInterrupted = errors.New("not checked: interrupted")

// interruptContext returns a context that the first Ctrl-C (SIGINT) cancels with errInterrupted,
// after a note on stderr. The handler is then removed, so a second Ctrl-C gets the default action
// and ends the process at once. stop releases the handler.
func interruptContext(parent context.Context, stderr io.Writer) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
			signal.Stop(sig) // the next Ctrl-C is not caught: it ends the process
			fmt.Fprintln(stderr, "\nsafetycheck: interrupted: stopping before the next file (Ctrl-C again to quit now)")
			cancel(errInterrupted)
		case <-done:
		}
	}()
	return ctx, func() {
		close(done)
		signal.Stop(sig)
		cancel(nil)
	}
}

// interruptError is the error of an input left unchecked because ctx ended: errInterrupted after
// Ctrl-C, else the context's own error.
func interruptError(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return ctx.Err()
}
