package setup

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
)

// The edits are made by the go command itself (go work edit, go mod edit), so that the files stay in
// the form it writes; this package only creates a go.work that does not exist yet. (It does not parse
// them with golang.org/x/mod: that would make `go run …/cmd/safety-setup` need go.sum entries an
// application does not have.)

// PointWorkspace makes appDir/go.work build the module in appDir against the configured gotch at
// gotchDir: it creates the file (`use .` and the replace) or updates an existing one (adds `use .`
// when missing, sets the replace), keeping everything else. It reports whether the file changed.
func PointWorkspace(ctx context.Context, appDir, gotchDir string) (bool, error) {
	goMod := filepath.Join(appDir, "go.mod")
	modData, err := os.ReadFile(goMod)
	if err != nil {
		return false, fmt.Errorf("setup: %s: run safety-setup from the root of your module (go mod init first): %w", appDir, err)
	}
	path := filepath.Join(appDir, "go.work")
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return false, err
	}
	if old == nil {
		goVersion := strings.TrimPrefix(runtime.Version(), "go")
		if m := goDirective.FindSubmatch(modData); m != nil {
			goVersion = string(m[1])
		}
		text := "// Written by safety-setup: builds this module against the configured gotch in the safety cache.\n" +
			"go " + goVersion + "\n\nuse .\n"
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return false, err
		}
	} else if err := goEdit(ctx, appDir, path, "work", "use", "."); err != nil {
		return false, err
	}
	if err := goEdit(ctx, appDir, path, "work", "edit", "-replace="+GotchModule+"@"+GotchVersion+"="+gotchDir); err != nil {
		return false, err
	}
	now, err := os.ReadFile(path)
	return !bytes.Equal(old, now), err
}

var goDirective = regexp.MustCompile(`(?m)^go ([0-9][0-9.a-z]*)\s*$`)

// PointModule adds (or updates) `replace github.com/sugarme/gotch v0.9.1 => gotchDir` in
// appDir/go.mod, for projects that do not use a workspace. It reports whether the file changed.
func PointModule(ctx context.Context, appDir, gotchDir string) (bool, error) {
	path := filepath.Join(appDir, "go.mod")
	old, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("setup: %s: %w", appDir, err)
	}
	if err := goEdit(ctx, appDir, "off", "mod", "edit", "-replace="+GotchModule+"@"+GotchVersion+"="+gotchDir); err != nil {
		return false, err
	}
	now, err := os.ReadFile(path)
	return !bytes.Equal(old, now), err
}

// goEdit runs `go ARGS` in dir with GOWORK=work (a go.work path, or "off").
func goEdit(ctx context.Context, dir, work string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK="+work, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("setup: go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
