// Command safety-setup prepares a Go module to build with github.com/sdsafety/safety: it provisions
// libtorch, builds the configured gotch once per user, and points the module at it. It is pure Go (no
// cgo), so it runs before anything that needs libtorch can build.
//
// From the root of an application module:
//
//	go run github.com/sdsafety/safety/cmd/safety-setup            # or: go get -tool …/cmd/safety-setup
//	go build                                                      #     go tool safety-setup
//	go run github.com/sdsafety/safety/cmd/safety-setup bundle -o dist ./app
//
// Setup, in order:
//  1. libtorch: PyTorch's 2.1.0 wheel from PyPI by default (-torch VERSION for another; sha256 checked
//     against the index), or an existing tree with -libtorch DIR (Debian's libtorch-dev at /usr, a CUDA
//     libtorch, a Python environment's site-packages/torch). CUDA is linked when that libtorch has it
//     and its libraries resolve (-cuda auto), or on demand (-cuda on|off). The C++ ABI and standard are
//     read from the libtorch.
//  2. gotch: a configured copy (its C++ wrapper compiled into a shared library, wrappers this libtorch
//     lacks stubbed, the per-op leak fixed) in the per-user cache, $SAFETY_CACHE_DIR or
//     os.UserCacheDir()/sdsafety, one folder per gotch version, libtorch, ABI and CPU/CUDA; built once
//     (minutes), under a lock. A second run changes nothing and takes seconds.
//  3. the module: go.work gets `use .` and `replace github.com/sugarme/gotch v0.9.1 => <cache folder>`
//     (created, or an existing one updated); with -mod the replace goes into go.mod instead. The Go
//     module cache is never modified.
//
// A program built this way finds its libraries with no environment variables: its run path holds
// $ORIGIN/lib and then the cache's absolute paths. `safety-setup bundle -o DIR PROGRAM` copies the
// program to DIR and every non-system library it needs to DIR/lib, so DIR runs on another machine of
// the same kind with no libtorch installed.
//
// Environment: SAFETY_CACHE_DIR, LIBTORCH (as -libtorch), TORCH_VERSION (as -torch), GOTCH_CUDA=0|1
// (as -cuda off|on), GOTCH_SRC (an unmodified gotch source tree, for machines without the module
// proxy), GOTCH_OPT (-O2), GOTCH_STUB (ops to stub, comma-separated), GOTCH_CXX11_ABI and GOTCH_CXXSTD
// (override detection), CXX, PIP_INDEX_SIMPLE (a PEP 691 index instead of PyPI).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/sdsafety/safety/hub"
	"github.com/sdsafety/safety/internal/setup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "bundle" {
		return runBundle(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("safety-setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: safety-setup [flags]            set up the module in -dir (default: here)\n"+
			"       safety-setup bundle -o DIR PROGRAM   copy a program and its libraries into DIR\n\nflags:\n")
		fs.PrintDefaults()
	}
	var (
		libtorch = fs.String("libtorch", os.Getenv("LIBTORCH"), "use this libtorch tree (lib/ and include/) instead of downloading one")
		version  = fs.String("torch", envOr("TORCH_VERSION", setup.DefaultTorchVersion), "PyTorch wheel version to take libtorch from")
		cuda     = fs.String("cuda", cudaFromEnv(), "link CUDA: auto, on or off")
		cache    = fs.String("cache", "", "cache directory (default $SAFETY_CACHE_DIR, else the user cache dir/sdsafety)")
		dir      = fs.String("dir", ".", "root of the module to set up")
		useMod   = fs.Bool("mod", false, "put the replace directive in go.mod instead of go.work")
		noEdit   = fs.Bool("no-edit", false, "configure only; print the gotch folder and touch no go.work or go.mod")
		src      = fs.String("gotch-src", os.Getenv("GOTCH_SRC"), "an unmodified gotch "+setup.GotchVersion+" source tree (default: the module proxy)")
		opt      = fs.String("opt", envOr("GOTCH_OPT", "-O2"), "C++ optimisation flag for gotch's wrapper")
		jobs     = fs.Int("jobs", 0, "parallel C++ compile jobs (default: the number of CPUs)")
		stubs    = fs.String("stub", os.Getenv("GOTCH_STUB"), "comma-separated ops to stub even if they compile")
		quiet    = fs.Bool("q", false, "print only errors and the result")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "safety-setup: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	logf := func(format string, a ...any) {
		if !*quiet {
			fmt.Fprintf(stderr, "safety-setup: "+format+"\n", a...)
		}
	}
	if err := setupModule(ctx, options{
		libtorch: *libtorch, version: *version, cuda: *cuda, cache: *cache, dir: *dir, useMod: *useMod,
		noEdit: *noEdit, src: *src, opt: *opt, jobs: *jobs, stubs: *stubs, quiet: *quiet,
	}, stdout, stderr, logf); err != nil {
		fmt.Fprintf(stderr, "safety-setup: %v\n", err)
		return 1
	}
	return 0
}

type options struct {
	libtorch, version, cuda, cache, dir string
	useMod, noEdit                      bool
	src, opt                            string
	jobs                                int
	stubs                               string
	quiet                               bool
}

func setupModule(ctx context.Context, o options, stdout, stderr io.Writer, logf func(string, ...any)) error {
	cache, err := cacheDir(o.cache)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if !o.noEdit {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
			return fmt.Errorf("%s has no go.mod: run safety-setup from the root of your module (after go mod init)", dir)
		}
	}
	root := o.libtorch
	if root == "" {
		ix := setup.NewIndex()
		if !o.quiet {
			if f, ok := stderr.(*os.File); ok && hub.IsTerminal(f) {
				ix.Progress = hub.NewTextProgress(stderr).Update
			} else {
				ix.Progress = quarterProgress(stderr)
			}
		}
		if root, err = setup.ProvisionLibtorch(ctx, cache, o.version, ix, logf); err != nil {
			return err
		}
	}
	lt, err := setup.InspectLibtorch(root)
	if err != nil {
		return err
	}
	useCUDA, err := lt.UseCUDA(o.cuda)
	if err != nil {
		return err
	}
	kind := "CPU"
	if useCUDA {
		kind = "CUDA"
	}
	logf("libtorch %s (%s, C++11 ABI %d, %s) at %s", lt.Version, kind, lt.CXX11ABI, lt.Std, lt.Root)
	g, err := setup.ConfigureGotch(ctx, setup.GotchOptions{
		Cache: cache, Libtorch: lt, CUDA: useCUDA, Source: o.src, Opt: o.opt, Jobs: o.jobs,
		Stubs: splitList(o.stubs), Logf: logf,
	})
	if err != nil {
		return err
	}
	state := "already configured"
	if g.Changed {
		state = "configured"
	}
	logf("gotch %s %s in %s (%d of %d wrappers stubbed)", setup.GotchVersion, state, g.Dir, len(g.Info.StubbedOps), g.Info.GeneratedWrappers)
	if o.noEdit {
		fmt.Fprintln(stdout, g.Dir)
		return nil
	}
	file := "go.work"
	var changed bool
	if o.useMod {
		file = "go.mod"
		changed, err = setup.PointModule(ctx, dir, g.Dir)
	} else {
		changed, err = setup.PointWorkspace(ctx, dir, g.Dir)
	}
	if err != nil {
		return err
	}
	what := "unchanged"
	if changed {
		what = "updated"
	}
	fmt.Fprintf(stdout, "safety-setup: %s %s: replace %s %s => %s\n", filepath.Join(dir, file), what, setup.GotchModule, setup.GotchVersion, g.Dir)
	// GOWORK=off is how safety-setup itself is run when the go.work names a cache folder that is gone
	// (go refuses to load such a workspace), so it gets no warning.
	if w := os.Getenv("GOWORK"); !o.useMod && w != "" && w != "off" && w != filepath.Join(dir, "go.work") {
		fmt.Fprintf(stderr, "safety-setup: warning: GOWORK=%s, so go will not read %s; unset GOWORK or use -mod\n", w, filepath.Join(dir, "go.work"))
	}
	return nil
}

func runBundle(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("safety-setup bundle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "output directory (required): the program goes there, its libraries into DIR/lib")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: safety-setup bundle -o DIR PROGRAM\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	files, err := setup.Bundle(fs.Arg(0), *out)
	if err != nil {
		fmt.Fprintf(stderr, "safety-setup: bundle: %v\n", err)
		return 1
	}
	var size int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			size += st.Size()
		}
	}
	fmt.Fprintf(stdout, "safety-setup: bundled %s and %d libraries into %s (%.0f MB)\n", filepath.Base(fs.Arg(0)), len(files)-1, *out, float64(size)/1e6)
	return 0
}

// cacheDir is -cache, else $SAFETY_CACHE_DIR, else os.UserCacheDir()/sdsafety.
func cacheDir(flagValue string) (string, error) {
	d := flagValue
	if d == "" {
		d = os.Getenv("SAFETY_CACHE_DIR")
	}
	if d == "" {
		uc, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no cache directory: set SAFETY_CACHE_DIR (%w)", err)
		}
		d = filepath.Join(uc, "sdsafety")
	}
	return filepath.Abs(d)
}

func cudaFromEnv() string {
	switch os.Getenv("GOTCH_CUDA") {
	case "0":
		return setup.CUDAOff
	case "1":
		return setup.CUDAOn
	}
	return setup.CUDAAuto
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// quarterProgress reports a download at each quarter, for logs that are not a terminal.
func quarterProgress(w io.Writer) func(file string, done, total int64) {
	last := map[string]int64{}
	return func(file string, done, total int64) {
		if total <= 0 {
			return
		}
		q := 4 * done / total
		if done == 0 || q > last[file] {
			last[file] = q
			fmt.Fprintf(w, "safety-setup: %s: %.1f of %.1f MB\n", file, float64(done)/1e6, float64(total)/1e6)
		}
	}
}
