package setup

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Bundle copies the program binary into dir and every shared library it needs, apart from the
// system's own (the C and C++ runtimes and others the loader finds in its default places), into
// dir/lib, so that dir runs on another machine of the same kind without libtorch installed. The
// program must have been linked against a gotch configured by this package, whose run path starts
// with $ORIGIN/lib. It returns the files written.
//
// Libraries that the program or libtorch open at run time by name (dlopen) rather than link are not
// found this way: the NVIDIA driver (libcuda) must be installed on the target, and a CUDA build's
// cuDNN sub-libraries are copied only when they are linked.
func Bundle(binary, dir string) ([]string, error) {
	deps, err := readELFDeps(binary)
	if err != nil {
		return nil, err
	}
	if !containsPath(append(deps.RunPath, deps.RPath...), filepath.Join(filepath.Dir(binary), "lib")) {
		return nil, fmt.Errorf("setup: %s has no $ORIGIN/lib in its run path: build it against the gotch configured by safety-setup (go.work replace)", binary)
	}
	found, system, missing, err := newResolver().closure(binary)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("setup: %s: libraries not found: %s", binary, strings.Join(missing, "; "))
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, filepath.Base(binary))
	if err := copyFile(binary, out, 0o755); err != nil {
		return nil, err
	}
	written := []string{out}
	names := make([]string, 0, len(found))
	for so := range found {
		if !system[so] {
			names = append(names, so)
		}
	}
	sort.Strings(names)
	for _, so := range names {
		dst := filepath.Join(dir, "lib", so)
		if err := copyFile(found[so], dst, 0o755); err != nil {
			return nil, err
		}
		written = append(written, dst)
	}
	if err := checkSelfContained(out, filepath.Join(dir, "lib")); err != nil {
		return nil, err
	}
	return written, nil
}

// checkSelfContained resolves the bundled program's libraries as the loader would on a machine
// where none of the absolute run paths exist: every library that is not a system one must be found in
// libDir.
func checkSelfContained(program, libDir string) error {
	r := newResolver()
	r.keepOnly = libDir
	_, _, missing, err := r.closure(program)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("setup: the bundle would not find: %s", strings.Join(missing, "; "))
	}
	return nil
}

func containsPath(dirs []string, want string) bool {
	for _, d := range dirs {
		if filepath.Clean(d) == filepath.Clean(want) {
			return true
		}
	}
	return false
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
