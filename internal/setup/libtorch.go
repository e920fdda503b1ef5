package setup

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"github.com/sdsafety/safety/internal/flock"
)

// DefaultTorchVersion is the libtorch that gotch v0.9.1's wrappers were generated for.
const DefaultTorchVersion = "2.1.0"

// Libtorch describes a libtorch tree and the facts the build needs from it.
type Libtorch struct {
	Root       string // the tree (its real path): lib/ and include/ below it
	LibDir     string // the directory holding libtorch_cpu.so
	Include    string // include/
	APIInclude string // include/torch/csrc/api/include
	Version    string // "2.1.0", from the headers
	CXX11ABI   int    // _GLIBCXX_USE_CXX11_ABI that libc10.so was built with: 0 or 1
	Std        string // -std=c++17, or -std=c++20 for headers that require it (PyTorch ≥ 2.10)
}

// InspectLibtorch reads the facts of the libtorch tree at root: a directory with lib/ and include/
// (an unpacked libtorch, /usr with Debian's libtorch-dev, or a Python environment's torch package).
func InspectLibtorch(root string) (*Libtorch, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("setup: libtorch %s: %w", root, err)
	}
	lt := &Libtorch{Root: real}
	candidates := []string{filepath.Join(real, "lib")}
	for _, a := range []string{"x86_64-linux-gnu", "aarch64-linux-gnu"} {
		candidates = append(candidates, filepath.Join(real, "lib", a))
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "libtorch_cpu.so")); err == nil {
			lt.LibDir = c
			break
		}
	}
	if lt.LibDir == "" {
		return nil, fmt.Errorf("setup: no libtorch_cpu.so under %s/lib: not a libtorch tree", real)
	}
	lt.Include = filepath.Join(real, "include")
	lt.APIInclude = filepath.Join(lt.Include, "torch", "csrc", "api", "include")
	if _, err := os.Stat(filepath.Join(lt.APIInclude, "torch", "version.h")); err != nil {
		return nil, fmt.Errorf("setup: no torch headers under %s (want torch/csrc/api/include/torch/version.h)", lt.Include)
	}
	if lt.Version, err = torchVersion(lt.Include, lt.APIInclude); err != nil {
		return nil, err
	}
	if lt.CXX11ABI, err = cxx11ABI(filepath.Join(lt.LibDir, "libc10.so")); err != nil {
		return nil, err
	}
	lt.Std = cxxStd(lt.Include)
	return lt, nil
}

var (
	versionString = regexp.MustCompile(`#define TORCH_VERSION\s*(?:\\\s*)?"([^"]+)"`)
	versionPart   = regexp.MustCompile(`#define TORCH_VERSION_(MAJOR|MINOR|PATCH) (\d+)`)
)

// torchVersion reads the version from torch/version.h; libtorch ≥ 2.9 keeps the defines in
// torch/headeronly/version.h, with the string on a continuation line.
func torchVersion(include, api string) (string, error) {
	var text strings.Builder
	for _, p := range []string{filepath.Join(api, "torch", "version.h"), filepath.Join(include, "torch", "headeronly", "version.h")} {
		if b, err := os.ReadFile(p); err == nil {
			text.Write(b)
			text.WriteByte('\n')
		}
	}
	if m := versionString.FindStringSubmatch(text.String()); m != nil {
		return m[1], nil
	}
	parts := map[string]string{}
	for _, m := range versionPart.FindAllStringSubmatch(text.String(), -1) {
		parts[m[1]] = m[2]
	}
	if parts["MAJOR"] == "" || parts["MINOR"] == "" {
		return "", fmt.Errorf("setup: cannot read the libtorch version from %s", filepath.Join(api, "torch", "version.h"))
	}
	v := parts["MAJOR"] + "." + parts["MINOR"]
	if parts["PATCH"] != "" {
		v += "." + parts["PATCH"]
	}
	return v, nil
}

// cxx11ABI tells the C++ ABI of libc10.so from c10::detail::torchCheckFail(const char*, const
// char*, uint32_t, const std::string&): its std::string parameter mangles as "Ss" in the old ABI and as
// "NSt7__cxx1112basic_string…" in the C++11 one. GOTCH_CXX11_ABI=0|1 overrides.
func cxx11ABI(libc10 string) (int, error) {
	switch os.Getenv("GOTCH_CXX11_ABI") {
	case "0":
		return 0, nil
	case "1":
		return 1, nil
	}
	old, err := exportsSymbol(libc10, "_ZN3c106detail14torchCheckFailEPKcS2_jRKSs")
	if err != nil {
		return 0, fmt.Errorf("setup: %s: %w", libc10, err)
	}
	if old {
		return 0, nil
	}
	if ok, _ := exportsSymbol(libc10, "_ZN3c106detail14torchCheckFailEPKcS2_jRKNSt7__cxx1112basic_string"); ok {
		return 1, nil
	}
	return 0, fmt.Errorf("setup: cannot tell the C++ ABI of %s; set GOTCH_CXX11_ABI=0 or 1", libc10)
}

// cxxStd is -std=c++20 for libtorch headers that require it (ATen.h checks __cplusplus ≥ 202002L),
// else -std=c++17; GOTCH_CXXSTD overrides.
func cxxStd(include string) string {
	if s := os.Getenv("GOTCH_CXXSTD"); s != "" {
		return "-std=" + s
	}
	b, err := os.ReadFile(filepath.Join(include, "ATen", "ATen.h"))
	if err == nil && strings.Contains(string(b[:min(len(b), 2000)]), "202002L") {
		return "-std=c++20"
	}
	return "-std=c++17"
}

// CUDADirs returns the directories holding the CUDA libraries libtorch_cuda.so needs outside LibDir:
// its own run paths ($ORIGIN expanded; a pip torch points at site-packages/nvidia/*/lib that way) and,
// for a pip torch, every site-packages/nvidia/*/lib.
func (lt *Libtorch) CUDADirs() []string {
	var dirs []string
	if d, err := readELFDeps(filepath.Join(lt.LibDir, "libtorch_cuda.so")); err == nil {
		dirs = append(append(dirs, d.RPath...), d.RunPath...)
	}
	if nv, err := filepath.Glob(filepath.Join(filepath.Dir(filepath.Dir(lt.LibDir)), "nvidia", "*", "lib")); err == nil {
		sort.Strings(nv)
		dirs = append(dirs, nv...)
	}
	var out []string
	seen := map[string]bool{lt.LibDir: true}
	for _, d := range dirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			continue
		}
		if real, err := filepath.EvalSymlinks(d); err == nil && !seen[real] {
			seen[real] = true
			out = append(out, d)
		}
	}
	return out
}

// CUDA modes for UseCUDA.
const (
	CUDAAuto = "auto" // link CUDA when libtorch_cuda.so is there and every library it needs is found
	CUDAOn   = "on"   // link CUDA, or fail
	CUDAOff  = "off"  // CPU only
)

// UseCUDA decides whether the CUDA libraries are linked, for mode CUDAAuto, CUDAOn or CUDAOff.
func (lt *Libtorch) UseCUDA(mode string) (bool, error) {
	have := true
	for _, n := range []string{"libtorch_cuda.so", "libc10_cuda.so"} {
		if _, err := os.Stat(filepath.Join(lt.LibDir, n)); err != nil {
			have = false
		}
	}
	switch mode {
	case CUDAOff:
		return false, nil
	case CUDAOn:
		if !have {
			return false, fmt.Errorf("setup: -cuda on, but %s has no libtorch_cuda.so and libc10_cuda.so", lt.LibDir)
		}
		return true, nil
	case CUDAAuto, "":
		if !have {
			return false, nil
		}
		_, _, missing, err := newResolver(append([]string{lt.LibDir}, lt.CUDADirs()...)...).closure(filepath.Join(lt.LibDir, "libtorch_cuda.so"))
		return err == nil && len(missing) == 0, nil
	}
	return false, fmt.Errorf("setup: CUDA mode %q: want auto, on or off", mode)
}

// goArchToWheel maps GOARCH to the wheels' machine tag.
func goArchToWheel() (string, error) {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64", nil
	case "arm64":
		return "aarch64", nil
	}
	return "", fmt.Errorf("setup: PyPI has no Linux torch wheel for GOARCH %s; pass -libtorch DIR", runtime.GOARCH)
}

// ProvisionLibtorch makes sure <cache>/libtorch-<version> holds libtorch version from PyPI's torch
// wheel (lib/ and include/, sha256-checked) and returns its path. Its libtorch_cpu.so links the CUDA
// runtime and profiler libraries even for the CPU (libcudart, libcupti): they come from the NVIDIA
// runtime wheels that torch's metadata pins, with the same check. A complete tree is reused.
func ProvisionLibtorch(ctx context.Context, cache, version string, ix *Index, logf func(string, ...any)) (string, error) {
	dest := filepath.Join(cache, "libtorch-"+version)
	if _, err := os.Stat(filepath.Join(dest, ".complete")); err == nil {
		return dest, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	unlock, err := flock.Lock(ctx, filepath.Join(cache, ".libtorch.lock"))
	if err != nil {
		return "", fmt.Errorf("setup: lock %s: %w", cache, err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dest, ".complete")); err == nil {
		return dest, nil // another run finished it while this one waited
	}
	arch, err := goArchToWheel()
	if err != nil {
		return "", err
	}
	logf("fetching torch %s from %s (500–700 MB, once)", version, ix.URL)
	wheels := filepath.Join(cache, "wheels")
	whl, err := ix.Fetch(ctx, wheels, "torch", version, "cp311", arch)
	if err != nil {
		return "", err
	}
	tmp := dest + ".tmp"
	os.RemoveAll(tmp)
	logf("unpacking torch/lib and torch/include into %s", dest)
	for _, part := range []string{"lib", "include"} {
		if _, err := extractPrefix(whl, "torch/"+part+"/", filepath.Join(tmp, part)); err != nil {
			return "", err
		}
	}
	if err := addNvidiaRuntime(ctx, ix, whl, tmp, wheels, arch, logf); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(version+"\n"), 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dest)
	if err := os.Rename(tmp, dest); err != nil {
		return "", err
	}
	return dest, nil
}

// cudaRuntimeWheels: the NVIDIA wheels that carry the libraries a torch wheel's libtorch_cpu.so
// links, by soname prefix, and the cuda-toolkit extra that names them. Older torch wheels pin the
// NVIDIA wheel directly (nvidia-cuda-runtime-cu12==12.1.105); newer ones (2.15) pin
// cuda-toolkit[cudart,cupti,…]==V, whose own metadata pins nvidia-cuda-runtime==13.2.86.* for the
// extra "cudart".
var cudaRuntimeWheels = []struct{ soname, dist, extra string }{
	{"libcudart.so", "nvidia-cuda-runtime", "cudart"},
	{"libcupti.so", "nvidia-cuda-cupti", "cupti"},
}

// requirement finds the pin of dist (with or without a -cuNN suffix) in wheel metadata: an exact
// version, or a prefix ending in ".*". With extra set, only a requirement marked for that extra counts.
func requirement(metadata, dist, extra string) (name, version string, ok bool) {
	re := regexp.MustCompile(`(?m)^Requires-Dist: (` + regexp.QuoteMeta(dist) + `(?:-cu\d+)?) ?\(?==([0-9][0-9A-Za-z]*(?:\.[0-9A-Za-z]+)*(?:\.\*)?)\)?(.*)$`)
	for _, m := range re.FindAllStringSubmatch(metadata, -1) {
		if extra == "" || strings.Contains(m[3], "extra == '"+extra+"'") || strings.Contains(m[3], `extra == "`+extra+`"`) {
			return m[1], m[2], true
		}
	}
	return "", "", false
}

var cudaToolkitPin = regexp.MustCompile(`(?m)^Requires-Dist: cuda-toolkit\[([^\]]*)\] ?\(?==([0-9][0-9A-Za-z.]*)`)

// addNvidiaRuntime puts the NVIDIA runtime libraries that tree/lib/libtorch_cpu.so needs beside it.
func addNvidiaRuntime(ctx context.Context, ix *Index, torchWheel, tree, wheels, arch string, logf func(string, ...any)) error {
	deps, err := readELFDeps(filepath.Join(tree, "lib", "libtorch_cpu.so"))
	if err != nil {
		return err
	}
	meta, err := wheelMetadata(torchWheel)
	if err != nil {
		return err
	}
	var toolkitMeta string // cuda-toolkit's metadata, fetched when torch pins through it
	for _, so := range deps.Needed {
		for _, rw := range cudaRuntimeWheels {
			if !strings.HasPrefix(so, rw.soname) {
				continue
			}
			if _, err := os.Stat(filepath.Join(tree, "lib", so)); err == nil {
				continue
			}
			name, version, ok := requirement(meta, rw.dist, "")
			if !ok {
				if toolkitMeta == "" {
					if m := cudaToolkitPin.FindStringSubmatch(meta); m != nil {
						logf("cuda-toolkit %s (torch pins the NVIDIA wheels through it)", m[2])
						whl, err := ix.Fetch(ctx, wheels, "cuda-toolkit", m[2], "", "any")
						if err != nil {
							return err
						}
						if toolkitMeta, err = wheelMetadata(whl); err != nil {
							return err
						}
					}
				}
				name, version, ok = requirement(toolkitMeta, rw.dist, rw.extra)
			}
			if !ok {
				return fmt.Errorf("setup: libtorch_cpu.so needs %s, but torch's metadata pins no %s wheel (directly or through cuda-toolkit)", so, rw.dist)
			}
			if strings.HasSuffix(version, ".*") {
				if version, err = ix.Newest(ctx, name, strings.TrimSuffix(version, ".*"), arch); err != nil {
					return err
				}
			}
			logf("%s %s (libtorch_cpu.so needs %s)", name, version, so)
			whl, err := ix.Fetch(ctx, wheels, name, version, "", arch)
			if err != nil {
				return err
			}
			if err := extractSharedLibs(whl, filepath.Join(tree, "lib")); err != nil {
				return err
			}
			if _, err := os.Stat(filepath.Join(tree, "lib", so)); err != nil {
				return fmt.Errorf("setup: %s did not provide %s", filepath.Base(whl), so)
			}
		}
	}
	return nil
}

// extractSharedLibs writes every shared library under a lib/ directory of the wheel into out (flat).
func extractSharedLibs(wheel, out string) error {
	_, err := extract(wheel, out, func(name string) string {
		if strings.Contains(name, "/lib/") && strings.Contains(path.Base(name), ".so") {
			return path.Base(name)
		}
		return ""
	})
	return err
}
