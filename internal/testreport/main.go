// Command testreport reads `go test -json` on stdin and prints what a plain `go test` prints (the
// package lines "ok …", "FAIL …", "? … [no test files]", and the output of failing tests), then the
// list of skipped tests with their reasons. `make test` pipes the whole suite through it, so that a
// checkout without the files some tests need shows which tests did not run and why.
//
//	go test -json ./... | go run ./internal/testreport [-skips FILE]
//
// -skips writes the skip list to FILE (for `make test` to print at its very end) instead of printing
// it, unless the run failed: then it is printed too. The exit status is 1 when a test, a package or a build
// failed, or the input held no test result at all; 0 otherwise.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json), with the build events of Go ≥ 1.24.
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

// line is a line of output and the test that printed it.
type line struct {
	test, text string
}

// skip is a skipped test and why.
type skip struct {
	pkg, test, reason string
}

// report accumulates the state of one `go test -json` stream.
type report struct {
	out     io.Writer
	pending map[string][]line // package → output of its running top-level tests
	skips   []skip
	failed  bool
	results int
}

func newReport(out io.Writer) *report {
	return &report{out: out, pending: map[string][]line{}}
}

// topLevel returns the top-level test a (sub)test belongs to.
func topLevel(test string) string {
	top, _, _ := strings.Cut(test, "/")
	return top
}

// handle processes one event.
func (r *report) handle(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.out, e.Output)
		return
	case "build-fail":
		r.failed = true
		return
	}
	if e.Test == "" {
		switch e.Action {
		case "output":
			// The package's own lines: "ok …", "FAIL …", "? … [no test files]", panics outside a test.
			// A plain go test does not print the "PASS" line of a passing package.
			if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "=== ") {
				fmt.Fprint(r.out, e.Output)
			}
		case "fail":
			r.failed = true
			r.results++
		case "pass", "skip":
			r.results++
		}
		return
	}
	switch e.Action {
	case "output":
		r.pending[e.Package] = append(r.pending[e.Package], line{e.Test, e.Output})
	case "skip":
		r.skips = append(r.skips, skip{e.Package, e.Test, r.reason(e.Package, e.Test)})
		r.finish(e)
	case "fail":
		r.failed = true
		if e.Test == topLevel(e.Test) { // print the test's output with its subtests', as go test does
			for _, l := range r.pending[e.Package] {
				if topLevel(l.test) == e.Test && !strings.HasPrefix(l.text, "=== ") {
					fmt.Fprint(r.out, l.text)
				}
			}
		}
		r.finish(e)
	case "pass":
		r.finish(e)
	}
}

// finish drops the buffered output of a finished top-level test.
func (r *report) finish(e event) {
	if e.Test != topLevel(e.Test) {
		return
	}
	kept := r.pending[e.Package][:0]
	for _, l := range r.pending[e.Package] {
		if topLevel(l.test) != e.Test {
			kept = append(kept, l)
		}
	}
	r.pending[e.Package] = kept
}

// reason is what a skipped test printed (its t.Skip message and logs), on one line.
func (r *report) reason(pkg, test string) string {
	var parts []string
	for _, l := range r.pending[pkg] {
		text := strings.TrimSpace(l.text)
		if l.test != test || text == "" || strings.HasPrefix(text, "=== ") || strings.HasPrefix(text, "--- SKIP") {
			continue
		}
		parts = append(parts, text)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " | ")
}

// skipList formats the skipped tests, sorted by package and name.
func (r *report) skipList() string {
	sort.SliceStable(r.skips, func(i, j int) bool {
		if r.skips[i].pkg != r.skips[j].pkg {
			return r.skips[i].pkg < r.skips[j].pkg
		}
		return r.skips[i].test < r.skips[j].test
	})
	var b strings.Builder
	fmt.Fprintf(&b, "Skipped tests: %d\n", len(r.skips))
	for _, s := range r.skips {
		fmt.Fprintf(&b, "  %s %s: %s\n", s.pkg, s.test, s.reason)
	}
	return b.String()
}

func run(in io.Reader, out io.Writer, skipsFile string) (ok bool, err error) {
	r := newReport(out)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// Not an event (go test prints some errors as plain text): pass it through.
			fmt.Fprintln(out, sc.Text())
			continue
		}
		r.handle(e)
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("reading go test -json: %w", err)
	}
	list := r.skipList()
	ok = !r.failed && r.results > 0
	if skipsFile != "" {
		if err := os.WriteFile(skipsFile, []byte(list), 0o644); err != nil {
			return false, fmt.Errorf("writing the skip list: %w", err)
		}
	}
	if skipsFile == "" || !ok {
		fmt.Fprint(out, list)
	} else {
		fmt.Fprintf(out, "%d skipped tests: listed in %s\n", len(r.skips), skipsFile)
	}
	if r.results == 0 {
		return false, fmt.Errorf("no test results in the input")
	}
	return ok, nil
}

func main() {
	skipsFile := flag.String("skips", "", "also write the skip list to this file")
	flag.Parse()
	ok, err := run(os.Stdin, os.Stdout, *skipsFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}
