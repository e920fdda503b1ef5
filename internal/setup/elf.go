package setup

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// elfDeps is what the dynamic loader needs to know of one shared object or program.
type elfDeps struct {
	Needed  []string // DT_NEEDED sonames, in order
	RPath   []string // DT_RPATH directories ($ORIGIN expanded)
	RunPath []string // DT_RUNPATH directories ($ORIGIN expanded)
}

// readELFDeps reads path's DT_NEEDED, DT_RPATH and DT_RUNPATH entries.
func readELFDeps(path string) (elfDeps, error) {
	f, err := elf.Open(path)
	if err != nil {
		return elfDeps{}, fmt.Errorf("setup: %s: %w", path, err)
	}
	defer f.Close()
	var d elfDeps
	if d.Needed, err = f.ImportedLibraries(); err != nil {
		return elfDeps{}, fmt.Errorf("setup: %s: %w", path, err)
	}
	origin := filepath.Dir(path)
	expand := func(tag elf.DynTag) []string {
		vals, _ := f.DynString(tag)
		var dirs []string
		for _, v := range vals {
			for _, dir := range strings.Split(v, ":") {
				if dir == "" {
					continue
				}
				dir = strings.ReplaceAll(strings.ReplaceAll(dir, "${ORIGIN}", origin), "$ORIGIN", origin)
				dirs = append(dirs, filepath.Clean(dir))
			}
		}
		return dirs
	}
	d.RPath, d.RunPath = expand(elf.DT_RPATH), expand(elf.DT_RUNPATH)
	return d, nil
}

// exportsSymbol reports whether the shared object at path defines the dynamic symbol name.
func exportsSymbol(path, name string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return false, err
	}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && strings.HasPrefix(s.Name, name) {
			return true, nil
		}
	}
	return false, nil
}

// systemLibDirs are the loader's default directories on Debian-like and other Linux systems.
func systemLibDirs() []string {
	arch := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	dirs := []string{}
	if arch != "" {
		dirs = append(dirs, "/lib/"+arch, "/usr/lib/"+arch)
	}
	return append(dirs, "/lib64", "/usr/lib64", "/lib", "/usr/lib")
}

// ldconfigCache maps sonames to paths from `ldconfig -p` (the loader's cache), or nil when ldconfig
// cannot be run.
func ldconfigCache() map[string]string {
	out, err := exec.Command("ldconfig", "-p").Output()
	if err != nil {
		out, err = exec.Command("/sbin/ldconfig", "-p").Output()
		if err != nil {
			return nil
		}
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		// "\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6"
		name, rest, ok := strings.Cut(strings.TrimSpace(line), " (")
		if !ok {
			continue
		}
		if _, path, ok := strings.Cut(rest, "=> "); ok {
			if _, seen := m[name]; !seen {
				m[name] = strings.TrimSpace(path)
			}
		}
	}
	return m
}

// resolver finds the files behind sonames as the dynamic loader would, without running it: the
// object's DT_RPATH (when it has no DT_RUNPATH), DT_RUNPATH, extra directories, the loader cache and
// the default directories. LD_LIBRARY_PATH is deliberately not consulted: what it finds would not be
// found by a program started without it.
type resolver struct {
	extra []string
	cache map[string]string
	// keepOnly, when set, drops every run-path directory outside it: how a bundle resolves on a
	// machine without the directories its absolute run paths name.
	keepOnly string
}

func newResolver(extra ...string) *resolver {
	return &resolver{extra: extra, cache: ldconfigCache()}
}

// find returns the path of soname as needed by an object with deps, and whether it came from a
// system location (the loader cache or a default directory) rather than a run path.
func (r *resolver) find(soname string, deps elfDeps) (path string, system bool, ok bool) {
	var dirs []string
	if len(deps.RunPath) == 0 {
		dirs = append(dirs, deps.RPath...)
	}
	dirs = append(dirs, deps.RunPath...)
	dirs = append(dirs, r.extra...)
	for _, d := range dirs {
		if r.keepOnly != "" && !within(d, r.keepOnly) {
			continue
		}
		p := filepath.Join(d, soname)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, false, true
		}
	}
	if p, ok := r.cache[soname]; ok {
		return p, true, true
	}
	for _, d := range systemLibDirs() {
		p := filepath.Join(d, soname)
		if _, err := os.Stat(p); err == nil {
			return p, true, true
		}
	}
	return "", false, false
}

// closure walks the shared-library dependencies of root, breadth first. It returns every library
// found (soname → path, system libraries included, flagged in system) and the sonames not found,
// each with the object that needed it.
func (r *resolver) closure(root string) (found map[string]string, system map[string]bool, missing []string, err error) {
	found, system = map[string]string{}, map[string]bool{}
	queue := []string{root}
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		deps, err := readELFDeps(obj)
		if err != nil {
			return nil, nil, nil, err
		}
		for _, so := range deps.Needed {
			if _, seen := found[so]; seen {
				continue
			}
			p, sys, ok := r.find(so, deps)
			if !ok {
				missing = append(missing, so+" (needed by "+obj+")")
				found[so] = ""
				continue
			}
			found[so], system[so] = p, sys
			if !sys {
				queue = append(queue, p)
			}
		}
	}
	for so, p := range found {
		if p == "" {
			delete(found, so)
		}
	}
	return found, system, missing, nil
}

// within reports whether dir is root or below it.
func within(dir, root string) bool {
	rel, err := filepath.Rel(root, dir)
	return err == nil && filepath.IsLocal(rel) || rel == "."
}
