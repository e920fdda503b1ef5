package safety

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/sdsafety/safety"

// layerRules says, for each package directory of the library, which imports of this module's
// packages and of gotch its library files may have (the standard library and golang.org/x are free). A directory not listed may import
// no internal/clip, no gotch/libtch, and nothing that imports the root package. Test files are free.
var layerRules = map[string][]string{
	// The model: one encoder and its configs, on the tape; file formats come from checkpoint.
	"internal/clip": {gotchPath, gotchPath + "/ts", modulePath + "/internal/gotchutil",
		modulePath + "/internal/checkpoint", modulePath + "/internal/fileread"},
	// File formats: pure Go, no libtorch.
	"internal/checkpoint": {modulePath + "/internal/fileread"},
	// Image decoding and preprocessing: pure Go.
	"internal/imageproc": {modulePath + "/internal/fileread"},
	"internal/cliptok":   {modulePath + "/internal/fileread"},
	"internal/fileread":  {},
	// The tests' shared builders: the standard library only, imported by tests only (below).
	"internal/testbuild": {},
	// The only place that calls libtorch below gotch's API (gotch/libtch).
	"internal/gotchutil": {gotchPath, gotchPath + "/ts", gotchPath + "/libtch"},
}

// commandSide are the internal packages that sit above the public API: plumbing shared by the
// commands (cmd/…, examples/…) and the benchmarks, which may import the root package and which no
// library package may import.
var commandSide = []string{"internal/cmdutil", "internal/benchutil"}

// importViolations returns "file: reason" for each import of a library file that breaks the rules:
// a package of layerRules importing outside its list, gotch/libtch outside internal/gotchutil, or an
// internal package importing the root package, or library code importing the test builders.
func importViolations(files map[string]*ast.File) []string {
	var out []string
	for _, path := range slices.Sorted(maps.Keys(files)) {
		dir := filepath.ToSlash(filepath.Dir(path))
		allowed, ruled := layerRules[dir]
		for _, imp := range files[path].Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if !isGotch(p) && p != modulePath && !strings.HasPrefix(p, modulePath+"/") {
				continue // the standard library and other modules (golang.org/x/…)
			}
			switch {
			case p == modulePath+"/internal/testbuild":
				out = append(out, path+": library code imports the test builders")
			case ruled && !slices.Contains(allowed, p):
				out = append(out, path+": imports "+p+", outside "+dir+"'s layer")
			case p == gotchPath+"/libtch" && dir != "internal/gotchutil":
				out = append(out, path+": raw libtch call site outside internal/gotchutil")
			case slices.Contains(commandSide, strings.TrimPrefix(p, modulePath+"/")) && !slices.Contains(commandSide, dir):
				out = append(out, path+": library code imports the commands' plumbing "+p)
			case p == modulePath && strings.HasPrefix(dir, "internal/") && !slices.Contains(commandSide, dir):
				out = append(out, path+": an internal package imports the public API")
			}
		}
	}
	return out
}

// TestImportLayering keeps the package layering of the README true (it reads the library files with
// the no-exit test's loader).
func TestImportLayering(t *testing.T) {
	files := parseFiles(t, token.NewFileSet(), libraryFiles(t))
	for _, v := range importViolations(files) {
		t.Error(v)
	}
	for dir := range layerRules {
		if !slices.ContainsFunc(slices.Sorted(maps.Keys(files)), func(p string) bool { return filepath.ToSlash(filepath.Dir(p)) == dir }) {
			t.Errorf("layer rule for %s matches no library file", dir)
		}
	}
}

// TestImportLayeringDetector checks the rules on files that break them, and on one that does not.
func TestImportLayeringDetector(t *testing.T) {
	fset := token.NewFileSet()
	parse := func(path, src string) *ast.File {
		t.Helper()
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	files := map[string]*ast.File{
		"internal/checkpoint/x.go": parse("internal/checkpoint/x.go", `package checkpoint; import _ "github.com/sugarme/gotch"`),
		"tensor_path.go":           parse("tensor_path.go", `package safety; import lib "github.com/sugarme/gotch/libtch"; var _ lib.Ctensor`),
		"internal/setup/x.go":      parse("internal/setup/x.go", `package setup; import _ "github.com/sdsafety/safety"`),
		"hub/x.go":                 parse("hub/x.go", `package hub; import _ "github.com/sdsafety/safety/internal/testbuild"`),
		"internal/clip/ok.go":      parse("internal/clip/ok.go", `package clip; import ("fmt"; _ "github.com/sugarme/gotch/ts"); var _ = fmt.Sprint`),
		"internal/cmdutil/ok.go":   parse("internal/cmdutil/ok.go", `package cmdutil; import _ "github.com/sdsafety/safety"`),
		"batcher.go":               parse("batcher.go", `package safety; import _ "github.com/sdsafety/safety/internal/cmdutil"`),
	}
	got := importViolations(files)
	want := []string{
		"batcher.go: library code imports the commands' plumbing github.com/sdsafety/safety/internal/cmdutil",
		"hub/x.go: library code imports the test builders",
		"internal/checkpoint/x.go: imports github.com/sugarme/gotch, outside internal/checkpoint's layer",
		"internal/setup/x.go: an internal package imports the public API",
		"tensor_path.go: raw libtch call site outside internal/gotchutil",
	}
	if !slices.Equal(got, want) {
		t.Errorf("violations\n%q\nwant\n%q", got, want)
	}
}
