package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestApplicationOutsideTheRepository is the application author's path, end to end: a new module
// outside this repository requires the library, runs `go mod tidy`, `go run …/cmd/safety-setup`
// (twice: the second run changes nothing), a plain `go build`, runs the program on the golden images
// (and on ../shared/parity when it is there), bundles it with `safety-setup bundle`, and runs the
// bundle, which must load every non-system library from its own lib/ folder.
//
// It runs with GOWORK, LD_LIBRARY_PATH, CPATH, LIBRARY_PATH and every CGO_* variable removed from the
// environment. SAFETY_CACHE_DIR is inherited (unset: the default per-user cache that `make setup`
// fills), and so is LIBTORCH (what `make setup` was given), so it reuses the configured gotch instead of
// compiling it again. -short skips it.
func TestApplicationOutsideTheRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an application with cgo (a minute or more); skipped with -short")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	appDir := t.TempDir()
	env := cleanEnv()
	src, err := os.ReadFile("testdata/app/main.go")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(appDir, "main.go"), string(src))
	writeFile(t, filepath.Join(appDir, "go.mod"), "module example.com/app\n\ngo 1.26\n\n"+
		"require github.com/sdsafety/safety v0.0.0\n\n// Stands in for `go get`: the library as it is in this checkout.\n"+
		"replace github.com/sdsafety/safety => "+repo+"\n")

	goCmd(t, appDir, env, "mod", "tidy")
	out := goCmd(t, appDir, env, "run", "github.com/sdsafety/safety/cmd/safety-setup")
	if !strings.Contains(out, "go.work updated") {
		t.Fatalf("first safety-setup run did not write go.work:\n%s", out)
	}
	work, err := os.ReadFile(filepath.Join(appDir, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(work), "use .") || !strings.Contains(string(work), "github.com/sugarme/gotch v0.9.1 =>") {
		t.Fatalf("go.work lacks `use .` or the gotch replace:\n%s", work)
	}
	out = goCmd(t, appDir, env, "run", "github.com/sdsafety/safety/cmd/safety-setup")
	if !strings.Contains(out, "go.work unchanged") || !strings.Contains(out, "already configured") {
		t.Fatalf("second safety-setup run changed something:\n%s", out)
	}
	goCmd(t, appDir, env, "build", "-o", "app", ".")

	model := filepath.Join(repo, "testdata", "golden", "models", "tiny_quickgelu")
	images, err := filepath.Glob(filepath.Join(repo, "testdata", "golden", "images", "*"))
	if err != nil || len(images) == 0 {
		t.Fatalf("no golden images (%v): the repository tracks them", err)
	}
	got := runApp(t, filepath.Join(appDir, "app"), env, model, images)
	compareGolden(t, filepath.Join(model, "expected.json"), got)

	parity := filepath.Join(repo, "..", "shared", "parity")
	if _, err := os.Stat(filepath.Join(parity, "compare.py")); err == nil {
		pimgs, _ := filepath.Glob(filepath.Join(parity, "images", "*"))
		res := runAppRaw(t, filepath.Join(appDir, "app"), env, filepath.Join(parity, "model"), pimgs)
		jsonl := filepath.Join(appDir, "parity.jsonl")
		writeFile(t, jsonl, res)
		cmd := exec.Command("python3", filepath.Join(parity, "compare.py"), parity, jsonl)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("parity fixture through the application: %v\n%s", err, b)
		} else {
			t.Logf("parity: %s", strings.TrimSpace(string(b)))
		}
	} else {
		t.Logf("../shared/parity absent: the application is checked against the golden model only")
	}

	// The bundle: the program and its libraries, found through $ORIGIN/lib before the cache.
	dist := filepath.Join(appDir, "dist")
	out = goCmd(t, appDir, env, "run", "github.com/sdsafety/safety/cmd/safety-setup", "bundle", "-o", dist, "./app")
	t.Logf("%s", strings.TrimSpace(out))
	cmd := exec.Command(filepath.Join(dist, "app"), append([]string{model}, images...)...)
	cmd.Env = append(env, "LD_DEBUG=libs")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bundled app: %v\n%s", err, tail(stderr.String(), 3000))
	}
	if stdout.String() != strings.Join(got, "\n")+"\n" {
		t.Errorf("the bundled program's output differs from the program's")
	}
	loaded := 0
	for _, line := range strings.Split(stderr.String(), "\n") {
		_, path, ok := strings.Cut(line, "calling init: ")
		if !ok {
			continue
		}
		path = strings.TrimSpace(path)
		loaded++
		if strings.HasPrefix(path, dist+string(filepath.Separator)) || systemPath(path) {
			continue
		}
		t.Errorf("the bundled program loaded %s from outside the bundle", path)
	}
	if loaded == 0 {
		t.Errorf("LD_DEBUG=libs reported no library loads; cannot tell where the bundle's libraries came from")
	}
}

// cleanEnv is the environment without the variables an application author would not have set.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "GOWORK", name == "LD_LIBRARY_PATH", name == "CPATH", name == "LIBRARY_PATH",
			strings.HasPrefix(name, "CGO_"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOTOOLCHAIN=local")
}

func systemPath(p string) bool {
	for _, d := range []string{"/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"} {
		if strings.HasPrefix(p, d) {
			return true
		}
	}
	return false
}

func goCmd(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir, cmd.Env = dir, env
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, tail(string(b), 4000))
	}
	return string(b)
}

func runAppRaw(t *testing.T, app string, env []string, model string, images []string) string {
	t.Helper()
	cmd := exec.Command(app, append([]string{model}, images...)...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", app, err, tail(stderr.String(), 3000))
	}
	return string(b)
}

func runApp(t *testing.T, app string, env []string, model string, images []string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(runAppRaw(t, app, env, model, images)))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != len(images) {
		t.Fatalf("%d output lines for %d images", len(lines), len(images))
	}
	return lines
}

type verdict struct {
	File            string    `json:"file"`
	NSFW            bool      `json:"nsfw"`
	BadConcepts     []int     `json:"bad_concepts"`
	SpecialConcepts []int     `json:"special_concepts"`
	ConceptScores   []float64 `json:"concept_scores"`
	SpecialScores   []float64 `json:"special_scores"`
	ImageEmbeds     []float64 `json:"image_embeds"`
}

// compareGolden checks the program's lines against the reference's answers for the golden model:
// verdicts and hit lists exactly, scores to their third decimal, embeddings to 1e-4 relative.
func compareGolden(t *testing.T, expectedPath string, lines []string) {
	t.Helper()
	b, err := os.ReadFile(expectedPath)
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		Images []struct {
			verdict
			SpecialCare []int `json:"special_care"`
		} `json:"images"`
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	want := map[string]verdict{}
	for _, e := range exp.Images {
		e.verdict.SpecialConcepts = e.SpecialCare
		want[e.File] = e.verdict
	}
	for _, l := range lines {
		var g verdict
		if err := json.Unmarshal([]byte(l), &g); err != nil {
			t.Fatalf("bad output line %q: %v", l, err)
		}
		w, ok := want[g.File]
		if !ok {
			t.Errorf("%s: not in %s", g.File, expectedPath)
			continue
		}
		if g.NSFW != w.NSFW || !slices.Equal(g.BadConcepts, w.BadConcepts) || !slices.Equal(nonNil(g.SpecialConcepts), nonNil(w.SpecialConcepts)) {
			t.Errorf("%s: nsfw %v bad %v special %v, reference %v %v %v", g.File, g.NSFW, g.BadConcepts, g.SpecialConcepts, w.NSFW, w.BadConcepts, w.SpecialConcepts)
		}
		if d := maxAbsDiff(g.ConceptScores, w.ConceptScores); d > 1.5e-3 {
			t.Errorf("%s: concept scores differ by %g", g.File, d)
		}
		if d, n := maxAbsDiff(g.ImageEmbeds, w.ImageEmbeds), norm(w.ImageEmbeds); d > 1e-4*n {
			t.Errorf("%s: image_embeds differ by %g (norm %g)", g.File, d, n)
		}
	}
}

func nonNil(s []int) []int {
	if s == nil {
		return []int{}
	}
	return s
}

func maxAbsDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func norm(a []float64) float64 {
	s := 0.0
	for _, v := range a {
		s += v * v
	}
	return math.Sqrt(s)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
