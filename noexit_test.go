package safety

import (
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Library code must never end the process: a broken image or checkpoint is an error for the caller
// to handle. These tests parse the module's non-test Go files outside examples/ and fail on calls of
// log.Fatal*, os.Exit (and syscall/unix Exit), and gotch's Must* helpers, which call log.Fatal on
// any libtorch error. TestNoHiddenExitThroughGotch goes one step further and reads gotch's own
// sources for the non-Must functions that can still reach log.Fatal.

const gotchPath = "github.com/sugarme/gotch"

func isGotch(path string) bool { return path == gotchPath || strings.HasPrefix(path, gotchPath+"/") }

// libraryFiles returns the module's non-test .go files outside examples/, testdata and hidden or
// build directories (.deps, .venv, bench-cache, out).
func libraryFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
				slices.Contains([]string{"examples", "testdata", "bench-cache", "out", "node_modules"}, name)) {
				return filepath.SkipDir
			}
			if path != "." {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir // another module
				}
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no library files found")
	}
	return files
}

// fileImports maps the names a file uses for its imports to their paths; dot imports are listed
// under ".", blank ones are left out.
type fileImports struct {
	byName map[string]string
	dot    []string
}

func importsOf(f *ast.File) fileImports {
	imp := fileImports{byName: map[string]string{}}
	for _, s := range f.Imports {
		path, err := strconv.Unquote(s.Path.Value)
		if err != nil {
			continue
		}
		name := path[strings.LastIndex(path, "/")+1:]
		if s.Name != nil {
			name = s.Name.Name
		}
		switch name {
		case "_":
		case ".":
			imp.dot = append(imp.dot, path)
		default:
			imp.byName[name] = path
		}
	}
	return imp
}

func (imp fileImports) has(pred func(string) bool) bool {
	for _, p := range imp.byName {
		if pred(p) {
			return true
		}
	}
	return slices.ContainsFunc(imp.dot, pred)
}

// forbidden says why calling name from the package at path ends the process, or "".
func forbidden(path, name string) string {
	switch {
	case path == "log" && strings.HasPrefix(name, "Fatal"):
		return "log." + name + " exits the process"
	case (path == "os" || path == "syscall" || path == "golang.org/x/sys/unix") && name == "Exit":
		return path + ".Exit exits the process"
	case isGotch(path) && strings.HasPrefix(name, "Must"):
		return "gotch's " + name + " calls log.Fatal on error"
	}
	return ""
}

// exitCalls returns, for one parsed file, "position: reason" for every reference to a function or
// method that ends the process. gotchFatal holds gotch functions ("path.Name") and methods
// (".Name") known to reach log.Fatal; own holds the method names this module declares, which a
// method call by that name is taken to mean.
func exitCalls(fset *token.FileSet, f *ast.File, gotchFatal, own map[string]bool) []string {
	imp := importsOf(f)
	usesGotch := imp.has(isGotch)
	usesLog := imp.has(func(p string) bool { return p == "log" })
	var out []string
	report := func(n ast.Node, why string) {
		out = append(out, fset.Position(n.Pos()).String()+": "+why)
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			name := n.Sel.Name
			if x, ok := n.X.(*ast.Ident); ok && x.Obj == nil {
				if path, ok := imp.byName[x.Name]; ok { // a package-qualified identifier
					if why := forbidden(path, name); why != "" {
						report(n, why)
					} else if isGotch(path) && gotchFatal[path+"."+name] {
						report(n, x.Name+"."+name+" can reach log.Fatal inside gotch")
					}
					return true
				}
			}
			// A method (or field) of some value.
			switch {
			case usesGotch && strings.HasPrefix(name, "Must"):
				report(n, "method "+name+": gotch's Must* methods call log.Fatal on error")
			case usesLog && strings.HasPrefix(name, "Fatal"):
				report(n, "method "+name+": (*log.Logger)."+name+" exits the process")
			}
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok && usesGotch && gotchFatal["."+sel.Sel.Name] && !own[sel.Sel.Name] {
				if x, ok := sel.X.(*ast.Ident); !ok || x.Obj != nil || imp.byName[x.Name] == "" {
					report(n, "method "+sel.Sel.Name+" of a gotch value can reach log.Fatal inside gotch")
				}
			}
			if id, ok := n.Fun.(*ast.Ident); ok && id.Obj == nil {
				for _, path := range imp.dot {
					if why := forbidden(path, id.Name); why != "" {
						report(n, why+" (dot import)")
					}
				}
			}
		}
		return true
	})
	return out
}

// ownMethods returns the names of the methods declared in files.
func ownMethods(t *testing.T, fset *token.FileSet, files map[string]*ast.File) map[string]bool {
	t.Helper()
	own := map[string]bool{}
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil {
				own[fd.Name.Name] = true
			}
		}
	}
	return own
}

// parseFiles parses the library files among paths (see notLibrary), by path.
func parseFiles(t *testing.T, fset *token.FileSet, paths []string) map[string]*ast.File {
	t.Helper()
	files := map[string]*ast.File{}
	for _, p := range paths {
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments) // with object resolution: locals have Obj set
		if err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
		if !notLibrary(f) {
			files[p] = f
		}
	}
	return files
}

// notLibrary reports whether a parsed file is not library code: a command (package main, such as a
// //go:generate program) or a file excluded from every build by a //go:build ignore constraint.
func notLibrary(f *ast.File) bool {
	if f.Name.Name == "main" {
		return true
	}
	for _, cg := range f.Comments {
		if cg.Pos() >= f.Package {
			break
		}
		for _, c := range cg.List {
			if expr, err := constraint.Parse(c.Text); err == nil {
				ignored := false
				expr.Eval(func(tag string) bool { ignored = ignored || tag == "ignore"; return true })
				if ignored {
					return true
				}
			}
		}
	}
	return false
}

// TestNoExitFromLibraryCode fails on any log.Fatal*, os.Exit or gotch Must* call in library code.
func TestNoExitFromLibraryCode(t *testing.T) {
	fset := token.NewFileSet()
	files := parseFiles(t, fset, libraryFiles(t))
	own := ownMethods(t, fset, files)
	for _, path := range slices.Sorted(maps.Keys(files)) {
		for _, v := range exitCalls(fset, files[path], nil, own) {
			t.Error(v)
		}
	}
	t.Logf("%d library files checked", len(files))
}

// TestExitCallsDetector checks the detector itself on code that breaks every rule, and on code
// that only looks similar.
func TestExitCallsDetector(t *testing.T) {
	const bad = `package p

import (
	stdlog "log"
	"os"
	"syscall"
	. "log"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func f(x *ts.Tensor, l *stdlog.Logger) {
	stdlog.Fatalf("x")
	stdlog.Fatal("x")
	os.Exit(1)
	syscall.Exit(2)
	Fatalln("dot")
	ts.MustOfSlice([]float32{1})
	y := x.MustAdd(x, false)
	_ = y.MustSize()
	gotch.MustNewDevice()
	l.Fatal("logger")
	defer os.Exit(3)
	exit := os.Exit
	_ = exit
	_ = x.Numel()
	_ = ts.Hidden()
}
`
	const good = `package p

import (
	"fmt"
	"log"
	"os"

	"github.com/sugarme/gotch/ts"
)

type tape struct{}

func (tape) Numel() int { return 0 }

func f(x *ts.Tensor, t tape) error {
	log.Printf("fine")
	_, err := os.Stat("x")
	y, err := x.Add(x, false)
	_ = y
	_ = t.Numel() // the module's own method of that name
	panic(fmt.Sprint(err)) // recoverable, not an exit
}
`
	fset := token.NewFileSet()
	parse := func(src string) *ast.File {
		f, err := parser.ParseFile(fset, "src.go", src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	fatal := map[string]bool{gotchPath + "/ts.Hidden": true, ".Numel": true}
	got := exitCalls(fset, parse(bad), fatal, nil)
	for _, want := range []string{"log.Fatalf", "log.Fatal ", "os.Exit", "syscall.Exit", "dot import", "MustOfSlice",
		"MustAdd", "MustSize", "MustNewDevice", "(*log.Logger).Fatal", "method Numel", "ts.Hidden"} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("not reported: %s", want)
		}
	}
	if n := len(got); n != 14 {
		t.Errorf("%d reports, want 14:\n%s", n, strings.Join(got, "\n"))
	}
	if got := exitCalls(fset, parse(good), fatal, map[string]bool{"Numel": true}); len(got) != 0 {
		t.Errorf("false positives:\n%s", strings.Join(got, "\n"))
	}
	for src, want := range map[string]bool{
		"//go:build ignore\n\n// Generator.\npackage p\n": true,
		"//go:build linux && ignore\n\npackage p\n":       true,
		"package main\n":                                true,
		"//go:build !windows\n\npackage p\n":            false,
		"// Package p says ignore this.\npackage p\n":   false,
		"package p\n\n//go:build ignore\nfunc f() {}\n": false, // not a constraint after the package clause
	} {
		if got := notLibrary(parse(src)); got != want {
			t.Errorf("notLibrary(%q) = %v, want %v", src, got, want)
		}
	}
}

// gotchSourceDir returns the directory of the gotch module this module builds against: the configured
// copy that go.work points at (cmd/safety-setup's cache), or the module cache's upstream copy without
// one. It asks the go command, so it follows GOWORK like the build does.
func gotchSourceDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", gotchPath).Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("go list -m %s: %v %s", gotchPath, err, out)
	}
	return dir
}

// gotchValueTypes are the gotch types whose methods the library calls.
var gotchValueTypes = []string{"Tensor", "Scalar", "Device", "Cuda"}

// receiverType returns the base type name of a method's receiver.
func receiverType(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return ""
	}
	x := fd.Recv.List[0].Type
	if st, ok := x.(*ast.StarExpr); ok {
		x = st.X
	}
	if id, ok := x.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// gotchFatalSet reads the gotch packages at paths and returns those of their functions
// ("path.Name") and methods (".Name") that are not Must* helpers but call log.Fatal*, os.Exit or a
// Must* helper that does (Tensor.Numel calls MustSize, which calls log.Fatal). It looks that one call
// deep, matching Must* helpers by name; Must* helpers that only panic (MustDrop) do not count, since
// a panic on the worker thread is recovered into an error.
func gotchFatalSet(t *testing.T, paths []string) map[string]bool {
	t.Helper()
	type decl struct {
		key string // "path.Name" or ".Name"
		fd  *ast.FuncDecl
		imp fileImports
	}
	var decls []decl
	fset := token.NewFileSet()
	gotchDir := gotchSourceDir(t)
	for _, path := range paths {
		dir := filepath.Join(gotchDir, strings.TrimPrefix(strings.TrimPrefix(path, gotchPath), "/"))
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("gotch sources: %v", err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
			if err != nil {
				t.Fatalf("parse gotch: %v", err)
			}
			imp := importsOf(f)
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				key := path + "." + fd.Name.Name
				if fd.Recv != nil {
					// Methods are matched by name at the call site, so only those of the types the
					// library holds count: a Drop that exits on another type must not flag Tensor.Drop.
					if !slices.Contains(gotchValueTypes, receiverType(fd)) {
						if !strings.HasPrefix(fd.Name.Name, "Must") {
							continue
						}
					}
					key = "." + fd.Name.Name
				}
				decls = append(decls, decl{key, fd, imp})
			}
		}
	}
	// calls reports whether body calls log.Fatal*/os.Exit, or a function or method whose name is in names.
	calls := func(d decl, names map[string]bool) bool {
		found := false
		ast.Inspect(d.fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || found {
				return !found
			}
			switch fun := call.Fun.(type) {
			case *ast.Ident:
				found = names[fun.Name]
			case *ast.SelectorExpr:
				if x, ok := fun.X.(*ast.Ident); ok && x.Obj == nil {
					if p, ok := d.imp.byName[x.Name]; ok && !isGotch(p) && forbidden(p, fun.Sel.Name) != "" {
						found = true
					}
				}
				found = found || names[fun.Sel.Name]
			}
			return !found
		})
		return found
	}
	exiting := map[string]bool{} // names of Must* helpers that exit
	for _, d := range decls {
		if name := d.fd.Name.Name; strings.HasPrefix(name, "Must") && calls(d, nil) {
			exiting[name] = true
		}
	}
	fatal := map[string]bool{}
	for _, d := range decls {
		if !strings.HasPrefix(d.fd.Name.Name, "Must") && calls(d, exiting) {
			fatal[d.key] = true
		}
	}
	return fatal
}

// TestNoHiddenExitThroughGotch fails when library code calls a gotch function or method that is not
// a Must* helper but can still reach log.Fatal (for example Tensor.Numel, which calls MustSize).
// Method calls are matched by name, so a method name this module declares itself is not checked.
func TestNoHiddenExitThroughGotch(t *testing.T) {
	fset := token.NewFileSet()
	files := parseFiles(t, fset, libraryFiles(t))
	var used []string
	for _, f := range files {
		for _, s := range f.Imports {
			if path, err := strconv.Unquote(s.Path.Value); err == nil && isGotch(path) && !slices.Contains(used, path) {
				used = append(used, path)
			}
		}
	}
	if len(used) == 0 {
		t.Skip("the library does not import gotch")
	}
	fatal := gotchFatalSet(t, used)
	own := ownMethods(t, fset, files)
	for _, path := range slices.Sorted(maps.Keys(files)) {
		for _, v := range exitCalls(fset, files[path], fatal, own) {
			t.Error(v)
		}
	}
	t.Logf("gotch packages %v: %d functions and methods can reach log.Fatal", used, len(fatal))
}
