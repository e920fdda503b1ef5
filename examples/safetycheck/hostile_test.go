package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runWithin runs the command in-process and panics (ending the test binary) if it has not returned
// after d, so that a regression to blocking reads fails instead of hanging.
func runWithin(t *testing.T, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	type out struct {
		code           int
		stdout, stderr string
	}
	done := make(chan out, 1)
	go func() {
		code, stdout, stderr := relRun(t, args...)
		done <- out{code, stdout, stderr}
	}()
	select {
	case o := <-done:
		return o.code, o.stdout, o.stderr
	case <-time.After(d):
		panic("safetycheck " + strings.Join(args, " ") + ": still running after " + d.String())
	}
}

// jsonRows decodes -json output into file → error ("" for a checked input).
func jsonRows(t *testing.T, stdout string) (files []string, errs map[string]string) {
	t.Helper()
	errs = map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var rec struct {
			File  string `json:"file"`
			Error string `json:"error"`
			NSFW  *bool  `json:"nsfw"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		files = append(files, rec.File)
		errs[rec.File] = rec.Error
		if rec.Error == "" && rec.NSFW == nil {
			t.Errorf("row for %s has neither an error nor a verdict", rec.File)
		}
	}
	return files, errs
}

// TestCLIHostileFiles covers issue 13 item 1 in the command: a named pipe called x.png and a symlink
// to /dev/zero among the inputs each get an error row, and the real image next to them is checked.
func TestCLIHostileFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("named pipes and /dev/zero are Unix cases")
	}
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "x.png"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.png")); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "good.png"), readTestFile(t, goldenImage))
	code, stdout, stderr := runWithin(t, 60*time.Second, "-q", "-json", "-model", goldenModel, dir)
	if code != exitFailed {
		t.Errorf("exit status %d, want %d (stderr: %s)", code, exitFailed, stderr)
	}
	files, errs := jsonRows(t, stdout)
	if len(files) != 3 {
		t.Fatalf("%d rows, want 3: %s", len(files), stdout)
	}
	for name, want := range map[string]string{"x.png": "named pipe", "zero.png": "character device", "good.png": ""} {
		got, ok := errs[filepath.Join(dir, name)]
		if !ok || (want == "" && got != "") || (want != "" && !strings.Contains(got, want)) {
			t.Errorf("row for %s: error %q (present %v), want one containing %q", name, got, ok, want)
		}
	}
}
