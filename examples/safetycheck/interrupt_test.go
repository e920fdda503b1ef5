package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sdsafety/safety"
)

// TestCheckAllStopsWhenInterrupted covers issue 13 item 4: after Ctrl-C (the context cancelled with
// errInterrupted) the command opens no further file, and every input left gets the interruption as
// its row's error. The same holds with -all-frames.
func TestCheckAllStopsWhenInterrupted(t *testing.T) {
	checker, err := safety.Load(goldenModel, safety.WithDevice(safety.DeviceCPU))
	if err != nil {
		t.Fatal(err)
	}
	defer checker.Close()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.png")
	writeTestFile(t, good, readTestFile(t, goldenImage))
	inputs := []string{good, filepath.Join(dir, "missing.png"), good}

	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errInterrupted)
	c := config{batch: 2, quiet: true}
	for name, check := range map[string]func(context.Context, *safety.Checker, []string, config, io.Writer) []outcome{
		"checkAll": checkAll, "checkAllFrames (-all-frames)": checkAllFrames,
	} {
		outcomes := check(ctx, checker, inputs, c, &bytes.Buffer{})
		if len(outcomes) != len(inputs) {
			t.Fatalf("%s: %d outcomes for %d inputs", name, len(outcomes), len(inputs))
		}
		for i, o := range outcomes {
			if o.file != inputs[i] || !errors.Is(o.err, errInterrupted) || o.result != nil {
				// A missing file would say "no such file" had it been opened.
				t.Errorf("%s: input %d: %s, %v, %v; want %s with errInterrupted", name, i, o.file, o.result, o.err, inputs[i])
			}
		}
		// The control: without the interruption the same inputs are opened and checked.
		outcomes = check(context.Background(), checker, inputs, c, &bytes.Buffer{})
		if outcomes[0].result == nil || !errors.Is(outcomes[1].err, os.ErrNotExist) || outcomes[2].result == nil {
			t.Errorf("%s: uninterrupted: %+v", name, outcomes)
		}
	}
}

// TestInterruptSignals covers the signal side of item 4 in a child process: the first SIGINT cancels
// the context (the process lives on and says how to quit), the second ends the process at once.
func TestInterruptSignals(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGINT delivery is a Unix case")
	}
	if os.Getenv("SAFETYCHECK_SIGINT_CHILD") == "1" {
		sigintChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInterruptSignals$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SAFETYCHECK_SIGINT_CHILD=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the child did not end within 30 s after two SIGINTs; stdout %q stderr %q", stdout.String(), stderr.String())
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("child status %v, want killed by SIGINT (the second Ctrl-C); stdout %q", cmd.ProcessState, stdout.String())
	}
	if out := stdout.String(); !strings.Contains(out, "first SIGINT: cancelled") || strings.Contains(out, "survived") {
		t.Errorf("child stdout %q: want the first SIGINT to cancel and the second to end it", out)
	}
	if !strings.Contains(stderr.String(), "Ctrl-C again to quit now") {
		t.Errorf("child stderr %q: want the note on how to quit", stderr.String())
	}
}

// sigintChild is the child of TestInterruptSignals: it sends itself SIGINT twice.
func sigintChild() {
	ctx, stop := interruptContext(context.Background(), os.Stderr)
	defer stop()
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	select {
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), errInterrupted) {
			os.Stdout.WriteString("first SIGINT: cancelled\n")
		}
	case <-time.After(10 * time.Second):
		os.Stdout.WriteString("first SIGINT: not delivered\n")
		os.Exit(2)
	}
	time.Sleep(50 * time.Millisecond) // the handler is removed before the context is cancelled
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	time.Sleep(10 * time.Second)
	os.Stdout.WriteString("survived the second SIGINT\n")
	os.Exit(0)
}
