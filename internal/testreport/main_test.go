package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stream is a `go test -json` run of two packages: one passes with a skipped test and a skipped
// subtest, one fails in a subtest; a third fails to build.
const stream = `{"Action":"start","Package":"ex/a"}
{"Action":"run","Package":"ex/a","Test":"TestOK"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"    a_test.go:5: a log line\n"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"ex/a","Test":"TestOK"}
{"Action":"run","Package":"ex/a","Test":"TestNeedsFixture"}
{"Action":"output","Package":"ex/a","Test":"TestNeedsFixture","Output":"=== RUN   TestNeedsFixture\n"}
{"Action":"output","Package":"ex/a","Test":"TestNeedsFixture","Output":"    a_test.go:9: fixture absent\n"}
{"Action":"output","Package":"ex/a","Test":"TestNeedsFixture","Output":"--- SKIP: TestNeedsFixture (0.00s)\n"}
{"Action":"skip","Package":"ex/a","Test":"TestNeedsFixture"}
{"Action":"run","Package":"ex/a","Test":"TestCases"}
{"Action":"run","Package":"ex/a","Test":"TestCases/gpu"}
{"Action":"output","Package":"ex/a","Test":"TestCases/gpu","Output":"    a_test.go:20: no CUDA\n"}
{"Action":"output","Package":"ex/a","Test":"TestCases/gpu","Output":"    --- SKIP: TestCases/gpu (0.00s)\n"}
{"Action":"skip","Package":"ex/a","Test":"TestCases/gpu"}
{"Action":"output","Package":"ex/a","Test":"TestCases","Output":"--- PASS: TestCases (0.00s)\n"}
{"Action":"pass","Package":"ex/a","Test":"TestCases"}
{"Action":"output","Package":"ex/a","Output":"PASS\n"}
{"Action":"output","Package":"ex/a","Output":"ok  \tex/a\t0.01s\n"}
{"Action":"pass","Package":"ex/a"}
{"Action":"run","Package":"ex/b","Test":"TestBad"}
{"Action":"output","Package":"ex/b","Test":"TestBad","Output":"=== RUN   TestBad\n"}
{"Action":"run","Package":"ex/b","Test":"TestBad/one"}
{"Action":"output","Package":"ex/b","Test":"TestBad/one","Output":"    b_test.go:7: got 2, want 3\n"}
{"Action":"output","Package":"ex/b","Test":"TestBad/one","Output":"    --- FAIL: TestBad/one (0.00s)\n"}
{"Action":"fail","Package":"ex/b","Test":"TestBad/one"}
{"Action":"output","Package":"ex/b","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"ex/b","Test":"TestBad"}
{"Action":"output","Package":"ex/b","Output":"FAIL\n"}
{"Action":"output","Package":"ex/b","Output":"FAIL\tex/b\t0.02s\n"}
{"Action":"fail","Package":"ex/b"}
{"ImportPath":"ex/c","Action":"build-output","Output":"ex/c/c.go:3:1: syntax error\n"}
{"ImportPath":"ex/c","Action":"build-fail"}
`

func TestReport(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        string
		wantOK    bool
		wantErr   bool
		want      []string // lines the output must contain, in order
		forbidden []string // text it must not contain
	}{
		{
			name:   "two packages, a skip, a failure, a build failure",
			in:     stream,
			wantOK: false,
			want: []string{"ok  \tex/a\t0.01s", "b_test.go:7: got 2, want 3", "--- FAIL: TestBad/one", "--- FAIL: TestBad (0.00s)",
				"FAIL\tex/b\t0.02s", "ex/c/c.go:3:1: syntax error", "Skipped tests: 2",
				"  ex/a TestCases/gpu: a_test.go:20: no CUDA", "  ex/a TestNeedsFixture: a_test.go:9: fixture absent"},
			forbidden: []string{"=== RUN", "a log line", "--- PASS", "PASS\n"},
		},
		{
			name:   "all pass",
			in:     strings.Join(strings.Split(stream, "\n")[:21], "\n") + "\n",
			wantOK: true,
			want:   []string{"ok  \tex/a\t0.01s"},
		},
		{
			name:    "no results",
			in:      "not json\n",
			wantErr: true,
			want:    []string{"not json", "Skipped tests: 0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			skips := filepath.Join(t.TempDir(), "skips.txt")
			ok, err := run(strings.NewReader(tc.in), &out, skips)
			if (err != nil) != tc.wantErr || ok != tc.wantOK {
				t.Fatalf("ok=%v err=%v, want ok=%v error=%v", ok, err, tc.wantOK, tc.wantErr)
			}
			got := out.String()
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order); output:\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, f := range tc.forbidden {
				if strings.Contains(got, f) {
					t.Errorf("output contains %q; output:\n%s", f, got)
				}
			}
			b, err := os.ReadFile(skips)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(b), "Skipped tests: ") {
				t.Errorf("skip file %q has no skip list", b)
			}
			// The list is printed when the run failed; else the file is named.
			if printed := strings.HasSuffix(got, string(b)); printed == ok {
				t.Errorf("skip list printed: %v, run ok: %v; output:\n%s", printed, ok, got)
			}
			if named := strings.Contains(got, "2 skipped tests: listed in "+skips); named != ok {
				t.Errorf("skip file named: %v, run ok: %v; output:\n%s", named, ok, got)
			}
		})
	}
}
