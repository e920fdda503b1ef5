package setup

import (
	"archive/zip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// extractPrefix writes the members of the wheel (a zip) whose names start with prefix into out, with
// the prefix removed.
func extractPrefix(wheel, prefix, out string) (int, error) {
	return extract(wheel, out, func(name string) string {
		if !strings.HasPrefix(name, prefix) {
			return ""
		}
		return strings.TrimPrefix(name, prefix)
	})
}

// extract writes each member of the wheel (a zip) for which dest returns a non-empty relative path
// to out/that path. Paths that would leave out are refused.
func extract(wheel, out string, dest func(name string) string) (int, error) {
	z, err := zip.OpenReader(wheel)
	if err != nil {
		return 0, fmt.Errorf("setup: %s: %w", wheel, err)
	}
	defer z.Close()
	n := 0
	for _, f := range z.File {
		if strings.HasSuffix(f.Name, "/") {
			continue
		}
		rel := dest(f.Name)
		if rel == "" {
			continue
		}
		rel = filepath.FromSlash(rel)
		if !filepath.IsLocal(rel) {
			return n, fmt.Errorf("setup: %s: member %q leaves the destination", wheel, f.Name)
		}
		if err := extractOne(f, filepath.Join(out, rel)); err != nil {
			return n, fmt.Errorf("setup: %s: %s: %w", wheel, f.Name, err)
		}
		n++
	}
	return n, nil
}

func extractOne(f *zip.File, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	src, err := f.Open()
	if err != nil {
		return err
	}
	defer src.Close()
	mode := os.FileMode(0o644)
	if f.Mode()&0o111 != 0 || strings.Contains(filepath.Base(path), ".so") {
		mode = 0o755
	}
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// wheelMetadata returns the text of the wheel's .dist-info/METADATA.
func wheelMetadata(wheel string) (string, error) {
	z, err := zip.OpenReader(wheel)
	if err != nil {
		return "", fmt.Errorf("setup: %s: %w", wheel, err)
	}
	defer z.Close()
	for _, f := range z.File {
		if strings.HasSuffix(f.Name, ".dist-info/METADATA") && strings.Count(f.Name, "/") == 1 {
			r, err := f.Open()
			if err != nil {
				return "", err
			}
			defer r.Close()
			b, err := io.ReadAll(io.LimitReader(r, 16<<20))
			return string(b), err
		}
	}
	return "", fmt.Errorf("setup: %s has no .dist-info/METADATA", wheel)
}
