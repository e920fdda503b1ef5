package setup

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A miniature gotch source tree: three generated wrappers, one of which (atg_gone) "does not compile
// against this libtorch", and the Go wrapper pattern that leaks.
const fakeGenerated = `// generated
void atg_abs(tensor *out__, tensor self) {
  PROTECT(
    auto outputs__ = torch::abs(*self);
  )
}

int64_t atg_gone(tensor *out__, tensor self) {
  PROTECT(
    return torch::gone(*self);
  )
  return 0;
}

void atg_scaled_dot_product_attention(tensor *out__, tensor query, tensor attn_mask) {
  PROTECT(
    auto outputs__ = torch::scaled_dot_product_attention(*query, (attn_mask ? *attn_mask : torch::Tensor()));
  )
}
`

const fakeTensorGo = `package ts
func f() {
	ptr := (*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))
	ctensorPtr0 := (*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))
}
`

// fakeCompiler is a stand-in for g++: it logs each call, fails a translation unit whose atg_gone is
// not a stub (reporting the line, as g++ does), and otherwise writes the output file.
const fakeCompiler = `#!/bin/sh
echo "$@" >> "$FAKE_CXX_LOG"
out=""; src=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift ;;
    *.cpp) src="$1" ;;
  esac
  shift
done
if [ -n "$src" ] && grep -q 'torch::gone' "$src"; then
  line=$(grep -n 'torch::gone' "$src" | head -1 | cut -d: -f1)
  echo "$src:$line:12: error: 'gone' is not a member of 'torch'" >&2
  exit 1
fi
echo obj > "$out"
`

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigureGotchStubsCachesAndWritesLinkFlags(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "gotch-src")
	writeTree(t, src, map[string]string{
		"go.mod":                           "module github.com/sugarme/gotch\n",
		"libtch/torch_api.h":               "thread_local char *torch_last_err = nullptr;\n",
		"libtch/torch_api.cpp":             "#include \"torch_api.h\"\n#include \"torch_api_generated.cpp.h\"\n",
		"libtch/torch_api_generated.cpp.h": fakeGenerated,
		"libtch/lib.go":                    "package libtch\n// #cgo LDFLAGS: -lcuda\n",
		"ts/tensor-generated.go":           fakeTensorGo,
		"example/main.go":                  "package main\n",
		"gen/gen.ml":                       "",
		"setup-gotch.sh":                   "",
		"../cxx":                           fakeCompiler,
		"../libtorch/lib/libtorch_cpu.so":  "",
	})
	log := filepath.Join(dir, "cxx.log")
	t.Setenv("FAKE_CXX_LOG", log)
	lt := &Libtorch{Root: filepath.Join(dir, "libtorch"), LibDir: filepath.Join(dir, "libtorch", "lib"),
		Include: filepath.Join(dir, "libtorch", "include"), APIInclude: filepath.Join(dir, "libtorch", "include", "api"),
		Version: "9.9.0", CXX11ABI: 1, Std: "-std=c++17"}
	opts := GotchOptions{Cache: filepath.Join(dir, "cache"), Libtorch: lt, Source: src, CXX: filepath.Join(dir, "cxx"), Jobs: 1}

	g, err := ConfigureGotch(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Changed || !strings.Contains(g.Dir, "libtorch-9.9.0_abi1_cpu_") {
		t.Errorf("first run: Changed=%v Dir=%s", g.Changed, g.Dir)
	}
	if !slices.Equal(g.Info.StubbedOps, []string{"gone"}) || g.Info.GeneratedWrappers != 3 {
		t.Errorf("stubbed %v of %d wrappers, want [gone] of 3", g.Info.StubbedOps, g.Info.GeneratedWrappers)
	}
	// The stub sets gotch's error and returns 0; the SDPA wrapper gets its optional-mask fix.
	units := ""
	for k := range unitCount(1) {
		b, _ := os.ReadFile(filepath.Join(opts.Cache, "build", filepath.Base(g.Dir), "generated_"+strconv.Itoa(k)+".cpp"))
		units += string(b)
	}
	for _, want := range []string{`strdup("gotch: op gone is not available in libtorch 9.9.0");`, "c10::optional<torch::Tensor>(*attn_mask)"} {
		if !strings.Contains(units, want) {
			t.Errorf("translation units lack %q", want)
		}
	}
	libGo, err := os.ReadFile(filepath.Join(g.Dir, "libtch", "lib.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-D_GLIBCXX_USE_CXX11_ABI=1", "-lgotchwrap -Wl,-rpath,$ORIGIN/lib -Wl,-rpath," + filepath.Join(g.Dir, "libtch"),
		"-ltorch_cpu -lc10 -lstdc++"} {
		if !strings.Contains(string(libGo), want) {
			t.Errorf("lib.go lacks %q:\n%s", want, libGo)
		}
	}
	if strings.Contains(string(libGo), "-lcuda") {
		t.Errorf("lib.go still links CUDA:\n%s", libGo)
	}
	tsGo, _ := os.ReadFile(filepath.Join(g.Dir, "ts", "tensor-generated.go"))
	if strings.Contains(string(tsGo), "C.malloc(0)") || strings.Count(string(tsGo), "defer C.free") != 2 {
		t.Errorf("output buffers not patched:\n%s", tsGo)
	}
	for _, gone := range []string{"example", "gen", "setup-gotch.sh", "libtch/torch_api.cpp", "libtch/torch_api_generated.cpp.h"} {
		if _, err := os.Stat(filepath.Join(g.Dir, gone)); err == nil {
			t.Errorf("%s is in the configured copy", gone)
		}
	}
	hdr, _ := os.ReadFile(filepath.Join(g.Dir, "libtch", "torch_api.h"))
	if !strings.Contains(string(hdr), "extern thread_local char *torch_last_err;") {
		t.Errorf("torch_api.h still defines torch_last_err: %s", hdr)
	}
	var info BuildInfo
	b, _ := os.ReadFile(filepath.Join(g.Dir, "BUILD_INFO.json"))
	if err := json.Unmarshal(b, &info); err != nil || info.Libtorch != "9.9.0" || info.CXX11ABI != "1" {
		t.Errorf("BUILD_INFO.json: %s (%v)", b, err)
	}

	// A second run changes nothing and compiles nothing.
	before, _ := os.ReadFile(log)
	g2, err := ConfigureGotch(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(log)
	if g2.Changed || g2.Dir != g.Dir || len(after) != len(before) {
		t.Errorf("second run: Changed=%v, %d compiler calls", g2.Changed, strings.Count(string(after[len(before):]), "\n"))
	}

	// Configured again from scratch (the stamp removed): known stubs and cached objects mean one
	// compiler call per link step and none per translation unit.
	os.Remove(filepath.Join(g.Dir, ".configured"))
	if _, err := ConfigureGotch(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(log)
	calls := strings.Split(strings.TrimSpace(string(again[len(after):])), "\n")
	for _, c := range calls {
		if strings.Contains(c, "generated_") && strings.Contains(c, " -c ") {
			t.Errorf("reconfiguring recompiled a cached unit: %s", c)
		}
	}
}

func TestBlameMapsCompilerLinesToWrappers(t *testing.T) {
	ws := splitWrappers(fakeGenerated)
	if len(ws) != 3 || ws[0].Name != "atg_abs" || ws[1].Name != "atg_gone" {
		t.Fatalf("split: %+v", ws)
	}
	text, spans := unitSource(ws, map[string]bool{}, "2.1.0")
	lines := strings.Split(text, "\n")
	var goneLine int
	for i, l := range lines {
		if strings.Contains(l, "torch::gone") {
			goneLine = i + 1
		}
	}
	cases := []struct {
		stderr string
		want   []string
	}{
		{"/x/unit.cpp:" + strconv.Itoa(goneLine) + ":5: error: no member", []string{"atg_gone"}},
		{"In file included from /x/unit.cpp:" + strconv.Itoa(goneLine) + ":", nil}, // not an error line
		{"/x/unit.cpp:" + strconv.Itoa(goneLine) + ":5:   required from here", []string{"atg_gone"}},
		{"/x/other.cpp:" + strconv.Itoa(goneLine) + ":5: error: no member", nil}, // another unit
		{"/usr/include/c++/x.h:3:5: error: something", nil},
	}
	for _, c := range cases {
		got := blame(c.stderr, "/x/unit.cpp", spans)
		var names []string
		for n := range got {
			names = append(names, n)
		}
		if !slices.Equal(names, c.want) {
			t.Errorf("blame(%q) = %v, want %v", c.stderr, names, c.want)
		}
	}
	stub := ws[1].stub("1.13.0")
	if stub[0] != ws[1].Sig || !strings.Contains(stub[1], "op gone is not available in libtorch 1.13.0") || stub[2] != "  return 0;" {
		t.Errorf("stub of an int64_t wrapper: %q", stub)
	}
	if s := ws[0].stub("1.13.0"); len(s) != 3 {
		t.Errorf("stub of a void wrapper returns a value: %q", s)
	}
}
