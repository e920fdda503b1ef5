package setup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/sdsafety/safety/internal/flock"
)

// The gotch release this module is written against, and its module path.
const (
	GotchModule  = "github.com/sugarme/gotch"
	GotchVersion = "v0.9.1"
)

// configVersion changes whenever what ConfigureGotch writes changes, so that caches made by an
// older version are configured again.
const configVersion = "safety-setup/1"

// GotchOptions says how to configure gotch. Libtorch and Cache are required; the zero value of the
// others means the default.
type GotchOptions struct {
	Cache    string    // the cache directory (see the package documentation)
	Libtorch *Libtorch // the libtorch to build against
	CUDA     bool      // link the CUDA libraries (see Libtorch.UseCUDA)
	// Source is an unmodified gotch GotchVersion source tree; "" fetches the module through the Go
	// module proxy (`go mod download`) and copies it (the module cache stays unmodified).
	Source string
	CXX    string   // the C++ compiler; default $CXX, else g++
	Opt    string   // the optimisation flag; default -O2
	Jobs   int      // parallel compile jobs; default runtime.NumCPU()
	Stubs  []string // op names to stub even if they compile (for a wrapper that crashes the compiler)
	Logf   func(format string, args ...any)
}

// Gotch is a configured gotch module.
type Gotch struct {
	Dir     string    // the module directory: the target of the replace directive
	Info    BuildInfo // what was built
	Changed bool      // false when an earlier run had configured it already
}

// BuildInfo is compiled into libgotchwrap.so (gotchsafety_build_info) and written to BUILD_INFO.json;
// internal/gotchutil reads it at run time.
type BuildInfo struct {
	Gotch             string   `json:"gotch"`
	Libtorch          string   `json:"libtorch"`
	LibtorchDir       string   `json:"libtorch_dir"`
	CUDA              bool     `json:"cuda"`
	CXX11ABI          string   `json:"cxx11_abi"`
	StubbedOps        []string `json:"stubbed_ops"`
	GeneratedWrappers int      `json:"generated_wrappers"`
}

func (o *GotchOptions) defaults() {
	if o.CXX == "" {
		o.CXX = os.Getenv("CXX")
	}
	if o.CXX == "" {
		o.CXX = "g++"
	}
	if o.Opt == "" {
		o.Opt = "-O2"
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// GotchDirName is the cache folder name for a configuration: gotch version, libtorch version, ABI,
// CPU or CUDA, and a short hash of the libtorch tree's path and the compile flags (two trees of the same
// version get two folders).
func GotchDirName(lt *Libtorch, cuda bool, flags []string) string {
	kind := "cpu"
	if cuda {
		kind = "cuda"
	}
	h := sha256.Sum256([]byte(lt.Root + "\x00" + strings.Join(flags, "\x00")))
	return fmt.Sprintf("gotch-%s_libtorch-%s_abi%d_%s_%s", GotchVersion, lt.Version, lt.CXX11ABI, kind, hex.EncodeToString(h[:4]))
}

// ConfigureGotch makes the configured copy of gotch for opts (see the package documentation) and
// returns it. A configuration made before with the same inputs is returned as it is.
func ConfigureGotch(ctx context.Context, opts GotchOptions) (*Gotch, error) {
	opts.defaults()
	lt := opts.Libtorch
	var cudaDirs []string
	if opts.CUDA {
		cudaDirs = lt.CUDADirs()
	}
	base := []string{lt.Std, "-fPIC", opts.Opt, "-w", fmt.Sprintf("-D_GLIBCXX_USE_CXX11_ABI=%d", lt.CXX11ABI)}
	name := GotchDirName(lt, opts.CUDA, append(append([]string{opts.CXX}, base...), cudaDirs...))
	out := filepath.Join(opts.Cache, "gotch", name)
	build := filepath.Join(opts.Cache, "build", name)
	libtch := filepath.Join(out, "libtch")
	flags := append(base, "-I", libtch, "-I", lt.Include, "-I", lt.APIInclude)

	keyJSON, _ := json.Marshal([]any{configVersion, GotchVersion, lt.Root, lt.Version, lt.CXX11ABI, opts.CUDA, cudaDirs, opts.CXX, flags, opts.Stubs})
	keySum := sha256.Sum256(keyJSON)
	key := hex.EncodeToString(keySum[:])
	stamp := filepath.Join(out, ".configured")
	g := &Gotch{Dir: out}
	if done, info := readStamp(stamp, key, out); done {
		g.Info = info
		return g, nil
	}
	if err := os.MkdirAll(filepath.Join(opts.Cache, "gotch"), 0o755); err != nil {
		return nil, err
	}
	unlock, err := flock.Lock(ctx, filepath.Join(opts.Cache, "gotch", name+".lock"))
	if err != nil {
		return nil, fmt.Errorf("setup: lock %s: %w", out, err)
	}
	defer unlock()
	if done, info := readStamp(stamp, key, out); done { // another run made it while this one waited
		g.Info = info
		return g, nil
	}
	g.Changed = true

	src := opts.Source
	if src == "" {
		if src, err = gotchModuleDir(ctx); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(filepath.Join(src, "libtch", "torch_api_generated.cpp.h")); err != nil {
		return nil, fmt.Errorf("setup: %s is not a gotch source tree (no libtch/torch_api_generated.cpp.h)", src)
	}
	kind := "CPU only"
	if opts.CUDA {
		kind = "CUDA"
	}
	opts.Logf("configuring gotch %s for libtorch %s at %s (C++11 ABI=%d, %s, %s) in %s", GotchVersion, lt.Version, lt.Root, lt.CXX11ABI, lt.Std, kind, out)

	// 1. The copy, with the Go-side fix.
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	if err := copyTree(src, out); err != nil {
		return nil, fmt.Errorf("setup: copy gotch: %w", err)
	}
	tsGen := filepath.Join(out, "ts", "tensor-generated.go")
	b, err := os.ReadFile(tsGen)
	if err != nil {
		return nil, err
	}
	patched, n := patchOutputBuffers(string(b))
	if n == 0 {
		return nil, fmt.Errorf("setup: %s: found no output buffers to patch; gotch's generated code has changed", tsGen)
	}
	if err := os.WriteFile(tsGen, []byte(patched), 0o644); err != nil {
		return nil, err
	}
	opts.Logf("patched %d output buffers in ts/tensor-generated.go (leak and overrun fix)", n)

	// torch_api.h defines gotch's thread-local last error; with several translation units it must be
	// declared in the header and defined once.
	if err := editFile(filepath.Join(libtch, "torch_api.h"), func(s string) string {
		return strings.Replace(s, "thread_local char *torch_last_err = nullptr;", "extern thread_local char *torch_last_err;", 1)
	}); err != nil {
		return nil, err
	}
	apiSrc, err := os.ReadFile(filepath.Join(libtch, "torch_api.cpp"))
	if err != nil {
		return nil, err
	}
	apiCPP := strings.Replace(string(apiSrc), `#include "torch_api_generated.cpp.h"`, "", 1)
	apiCPP = strings.Replace(apiCPP, `#include "torch_api.h"`, "#include \"torch_api.h\"\nthread_local char *torch_last_err = nullptr;", 1)
	genSrc, err := os.ReadFile(filepath.Join(libtch, "torch_api_generated.cpp.h"))
	if err != nil {
		return nil, err
	}
	wrappers := splitWrappers(string(genSrc))
	opts.Logf("%d generated wrappers", len(wrappers))

	// 2. Compile, stubbing what fails.
	stubs, err := compileWrappers(ctx, &opts, build, flags, apiCPP, wrappers)
	if err != nil {
		return nil, err
	}
	stubbed := make([]string, 0, len(stubs))
	for s := range stubs {
		stubbed = append(stubbed, strings.TrimPrefix(s, "atg_"))
	}
	sort.Strings(stubbed)
	g.Info = BuildInfo{Gotch: GotchVersion, Libtorch: lt.Version, LibtorchDir: lt.Root, CUDA: opts.CUDA,
		CXX11ABI: fmt.Sprint(lt.CXX11ABI), StubbedOps: stubbed, GeneratedWrappers: len(wrappers)}
	infoJSON, _ := json.Marshal(g.Info)
	quoted, _ := json.Marshal(string(infoJSON))
	infoSrc := filepath.Join(build, "build_info.cpp")
	if err := os.WriteFile(infoSrc, []byte(`extern "C" const char *gotchsafety_build_info(void) { return `+string(quoted)+"; }\n"), 0o644); err != nil {
		return nil, err
	}
	if err := run(ctx, opts.CXX, append(flags, "-c", infoSrc, "-o", filepath.Join(build, "build_info.o"))...); err != nil {
		return nil, err
	}

	// 3. The shared library: run paths $ORIGIN first (a bundle keeps it beside libtorch), then libtorch's.
	libs := []string{"-ltorch_cpu", "-lc10"}
	if opts.CUDA {
		libs = append([]string{"-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"}, libs...)
		var paths []string
		for _, d := range cudaDirs {
			paths = append(paths, "-Wl,-rpath-link,"+d, "-Wl,-rpath,"+d)
		}
		libs = append(paths, libs...)
	}
	objs := []string{filepath.Join(build, "torch_api.o"), filepath.Join(build, "build_info.o")}
	for k := range unitCount(opts.Jobs) {
		objs = append(objs, filepath.Join(build, fmt.Sprintf("generated_%d.o", k)))
	}
	so := filepath.Join(libtch, "libgotchwrap.so")
	link := append([]string{"-shared", "-o", so}, objs...)
	link = append(link, "-L"+lt.LibDir, "-Wl,-rpath,$ORIGIN", "-Wl,-rpath,"+lt.LibDir)
	if err := run(ctx, opts.CXX, append(link, libs...)...); err != nil {
		return nil, fmt.Errorf("setup: linking libgotchwrap.so: %w", err)
	}

	// 4. The cgo package without C++ sources, linked to the library.
	for _, f := range []string{"torch_api.cpp", "torch_api_generated.cpp.h"} {
		if err := os.Rename(filepath.Join(libtch, f), filepath.Join(libtch, f+".orig")); err != nil {
			return nil, err
		}
	}
	ld := []string{"-L" + libtch, "-lgotchwrap", "-Wl,-rpath,$ORIGIN/lib", "-Wl,-rpath," + libtch,
		"-L" + lt.LibDir, "-Wl,-rpath," + lt.LibDir}
	ld = append(append(ld, libs...), "-lstdc++")
	libGo := fmt.Sprintf("// Code generated by safety-setup (internal/setup) for libtorch %s; DO NOT EDIT.\n\n"+
		"package libtch\n\n// #cgo CFLAGS: -I${SRCDIR} -O2 -D_GLIBCXX_USE_CXX11_ABI=%d\n// #cgo LDFLAGS: %s\nimport \"C\"\n",
		lt.Version, lt.CXX11ABI, strings.Join(ld, " "))
	if err := os.WriteFile(filepath.Join(libtch, "lib.go"), []byte(libGo), 0o644); err != nil {
		return nil, err
	}
	pretty, _ := json.MarshalIndent(g.Info, "", " ")
	if err := os.WriteFile(filepath.Join(out, "BUILD_INFO.json"), append(pretty, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(stamp, []byte(key+"\n"), 0o644); err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("gotch configured: libtorch %s, %d of %d wrappers stubbed", lt.Version, len(stubbed), len(wrappers))
	if len(stubbed) > 0 {
		msg += " (" + strings.Join(stubbed[:min(8, len(stubbed))], ", ")
		if len(stubbed) > 8 {
			msg += ", …"
		}
		msg += ")"
	}
	opts.Logf("%s", msg)
	return g, nil
}

// readStamp reports whether out was configured with key, and its build information.
func readStamp(stamp, key, out string) (bool, BuildInfo) {
	b, err := os.ReadFile(stamp)
	if err != nil || strings.TrimSpace(string(b)) != key {
		return false, BuildInfo{}
	}
	var info BuildInfo
	ib, err := os.ReadFile(filepath.Join(out, "BUILD_INFO.json"))
	if err != nil || json.Unmarshal(ib, &info) != nil {
		return false, BuildInfo{}
	}
	if _, err := os.Stat(filepath.Join(out, "libtch", "libgotchwrap.so")); err != nil {
		return false, BuildInfo{}
	}
	return true, info
}

// unitCount is how many translation units the generated wrappers are split into.
func unitCount(jobs int) int { return max(2, 2*jobs) }

// compileWrappers compiles torch_api.cpp and the wrappers (split into unitCount units, in parallel)
// into objects in build, stubbing each wrapper the compiler blames, for up to four passes. An object
// compiled before from the same source with the same compiler and flags is reused. It returns the
// stubbed wrappers' names.
func compileWrappers(ctx context.Context, opts *GotchOptions, build string, flags []string, apiCPP string, ws []wrapper) (map[string]bool, error) {
	if err := os.MkdirAll(build, 0o755); err != nil {
		return nil, err
	}
	lt := opts.Libtorch
	stubs := map[string]bool{}
	// The wrappers that failed against this libtorch last time are stubbed from the start.
	knownSum := sha256.Sum256([]byte(lt.Root + " " + lt.Version + " " + strings.Join(flags, " ")))
	known := filepath.Join(build, "stubs-"+hex.EncodeToString(knownSum[:8])+".json")
	if b, err := os.ReadFile(known); err == nil {
		var names []string
		if json.Unmarshal(b, &names) == nil {
			for _, n := range names {
				stubs[n] = true
			}
		}
	}
	for _, n := range opts.Stubs {
		if n = strings.TrimSpace(n); n != "" {
			stubs["atg_"+strings.TrimPrefix(n, "atg_")] = true
		}
	}
	nUnits := unitCount(opts.Jobs)
	units := map[string][]wrapper{"torch_api": nil}
	pending := []string{"torch_api"}
	for k := range nUnits {
		name := fmt.Sprintf("generated_%d", k)
		for i := k; i < len(ws); i += nUnits {
			units[name] = append(units[name], ws[i])
		}
		pending = append(pending, name)
	}
	type result struct {
		name, stderr, src string
		spans             []span
		err               error
	}
	for pass := 1; pass <= 4; pass++ {
		opts.Logf("compiling %d translation units with %d jobs (pass %d; minutes the first time)", len(pending), opts.Jobs, pass)
		results := make([]result, len(pending))
		sem := make(chan struct{}, opts.Jobs)
		var wg sync.WaitGroup
		for i, name := range pending {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				r := result{name: name, src: filepath.Join(build, name+".cpp")}
				text := apiCPP
				if name != "torch_api" {
					text, r.spans = unitSource(units[name], stubs, lt.Version)
				}
				r.stderr, r.err = compileCached(ctx, opts.CXX, flags, r.src, filepath.Join(build, name+".o"), text)
				results[i] = r
			}()
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var failed []string
		for _, r := range results {
			if r.err == nil {
				continue
			}
			added := 0
			for n := range blame(r.stderr, r.src, r.spans) {
				if !stubs[n] {
					stubs[n] = true
					added++
				}
			}
			if added == 0 {
				logPath := filepath.Join(build, r.name+".log")
				os.WriteFile(logPath, []byte(r.stderr), 0o644)
				lines := strings.Split(r.stderr, "\n")
				return nil, fmt.Errorf("setup: %s.cpp does not compile against libtorch %s and no wrapper could be blamed; see %s:\n%s",
					r.name, lt.Version, logPath, strings.Join(lines[:min(30, len(lines))], "\n"))
			}
			failed = append(failed, r.name)
		}
		if len(failed) == 0 {
			names := make([]string, 0, len(stubs))
			for n := range stubs {
				names = append(names, n)
			}
			sort.Strings(names)
			b, _ := json.Marshal(names)
			os.WriteFile(known, b, 0o644)
			return stubs, nil
		}
		opts.Logf("stubbing %d wrappers that do not compile against libtorch %s", len(stubs), lt.Version)
		pending = failed
	}
	return nil, fmt.Errorf("setup: gotch's wrappers still fail to compile against libtorch %s after 4 passes", lt.Version)
}

// compileCached writes text to src and compiles it to obj, unless obj was compiled from the same text
// with the same compiler and flags (recorded in obj.key). It returns the compiler's stderr.
func compileCached(ctx context.Context, cxx string, flags []string, src, obj, text string) (string, error) {
	keyJSON, _ := json.Marshal([]any{cxx, flags, text})
	sum := sha256.Sum256(keyJSON)
	key := hex.EncodeToString(sum[:])
	if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
		return "", err
	}
	if k, err := os.ReadFile(obj + ".key"); err == nil && string(k) == key {
		if _, err := os.Stat(obj); err == nil {
			return "", nil
		}
	}
	os.Remove(obj + ".key")
	cmd := exec.CommandContext(ctx, cxx, append(append([]string{}, flags...), "-c", src, "-o", obj)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stderr.String(), fmt.Errorf("setup: %s: %w", filepath.Base(src), err)
	}
	return stderr.String(), os.WriteFile(obj+".key", []byte(key), 0o644)
}

// run runs a command, returning its combined output in the error when it fails.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("setup: %s %s: %w\n%s", name, strings.Join(args[:min(3, len(args))], " "), err, out)
	}
	return nil
}

// gotchModuleDir returns gotch's directory in the module cache, downloading it through the module
// proxy when needed (outside any module or workspace, so the caller's go.work plays no part).
func gotchModuleDir(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", GotchModule+"@"+GotchVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		msg := info.Error
		if ee, ok := err.(*exec.ExitError); ok && msg == "" {
			msg = string(ee.Stderr)
		}
		return "", fmt.Errorf("setup: go mod download %s@%s: %v %s", GotchModule, GotchVersion, err, msg)
	}
	return info.Dir, nil
}

// copyTree copies gotch's source tree from src to dst without its examples and generator, with
// writable permissions (the module cache's files are read-only).
func copyTree(src, dst string) error {
	skip := map[string]bool{"example": true, "gen": true, "dune-project": true}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if skip[d.Name()] || strings.HasSuffix(d.Name(), ".sh") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

func editFile(path string, edit func(string) string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(edit(string(b))), 0o644)
}
