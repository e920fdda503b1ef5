package setup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultIndex is PyPI's simple index; the PIP_INDEX_SIMPLE environment variable overrides it (a
// mirror that serves PEP 691 JSON).
const DefaultIndex = "https://pypi.org/simple"

// Wheel is one file of a package's listing in a PEP 691 JSON simple index.
type Wheel struct {
	Filename string            `json:"filename"`
	URL      string            `json:"url"`
	Hashes   map[string]string `json:"hashes"`
	Size     int64             `json:"size"`
}

// Index fetches wheels from a simple index. The zero value is not usable: set URL and Client.
type Index struct {
	URL    string       // base URL, e.g. DefaultIndex
	Client *http.Client // the HTTP client
	// Progress, when set, is called as a download advances (done of total bytes; total < 0 when
	// unknown); hub.TextProgress's Update fits.
	Progress func(file string, done, total int64)
}

// NewIndex returns an Index for PIP_INDEX_SIMPLE or DefaultIndex with http.DefaultClient.
func NewIndex() *Index {
	u := os.Getenv("PIP_INDEX_SIMPLE")
	if u == "" {
		u = DefaultIndex
	}
	return &Index{URL: strings.TrimRight(u, "/"), Client: http.DefaultClient}
}

// Files lists the files the index has for the project name.
func (ix *Index) Files(ctx context.Context, name string) ([]Wheel, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ix.URL+"/"+name+"/", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/vnd.pypi.simple.v1+json")
	resp, err := ix.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("setup: index listing of %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("setup: index listing of %s: %s", name, resp.Status)
	}
	var listing struct {
		Files []Wheel `json:"files"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&listing); err != nil {
		return nil, fmt.Errorf("setup: index listing of %s: %w", name, err)
	}
	return listing.Files, nil
}

// PickWheel chooses name==version's manylinux wheel for arch ("x86_64", "aarch64") from files: the one
// for the CPython tag (e.g. "cp311") when there is one, else a py3-none wheel. Arch "any" picks a
// pure-Python wheel (…-none-any.whl). It returns false when there is none.
func PickWheel(files []Wheel, name, version, tag, arch string) (Wheel, bool) {
	prefix := strings.ToLower(strings.ReplaceAll(name, "-", "_")) + "-" + version + "-"
	var fallback *Wheel
	for i, f := range files {
		fn := f.Filename
		if !strings.HasSuffix(fn, ".whl") || !strings.HasPrefix(strings.ToLower(fn), prefix) {
			continue
		}
		if arch == "any" {
			if strings.HasSuffix(fn, "-none-any.whl") && fallback == nil {
				fallback = &files[i]
			}
			continue
		}
		if !strings.Contains(fn, "manylinux") || !strings.Contains(fn, arch) {
			continue
		}
		if tag != "" && strings.Contains(fn, "-"+tag+"-"+tag+"-") {
			return f, true
		}
		if strings.Contains(fn, "-py3-none-") && fallback == nil {
			fallback = &files[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return Wheel{}, false
}

// Fetch downloads name==version's wheel (see PickWheel) into dir and returns its path. A file already
// there with the expected sha256 is reused; a new download is written to a ".part" file, checked
// against the expected sha256 and only then renamed into place. The expected sha256 is the pinned one
// for a file in [PinnedWheels] (an index publishing another is refused), else the index's.
func (ix *Index) Fetch(ctx context.Context, dir, name, version, tag, arch string) (string, error) {
	files, err := ix.Files(ctx, name)
	if err != nil {
		return "", err
	}
	w, ok := PickWheel(files, name, version, tag, arch)
	if !ok {
		return "", fmt.Errorf("setup: the index %s has no manylinux %s wheel of %s==%s for %s or py3", ix.URL, arch, name, version, tag)
	}
	want, source, err := expectedSHA256(w)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(w.Filename, `/\`) {
		return "", fmt.Errorf("setup: the index names a wheel %q", w.Filename)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, w.Filename)
	if got, err := fileSHA256(path); err == nil && got == want {
		return path, nil
	}
	part := path + ".part"
	if err := ix.download(ctx, w, part); err != nil {
		os.Remove(part)
		return "", err
	}
	got, err := fileSHA256(part)
	if err != nil {
		return "", err
	}
	if got != want {
		os.Remove(part)
		return "", fmt.Errorf("setup: %s: sha256 %s, %s says %s", w.Filename, got, source, want)
	}
	return path, os.Rename(part, path)
}

// expectedSHA256 is the sha256 a download of w must have: its pin, which the index must agree with
// when it publishes one, or else the index's; source names which ("the pin", "the index").
func expectedSHA256(w Wheel) (sum, source string, err error) {
	index := strings.ToLower(w.Hashes["sha256"])
	pin, pinned := PinnedWheels[w.Filename]
	switch {
	case pinned && index != "" && index != pin:
		return "", "", fmt.Errorf("setup: the index publishes sha256 %s for %s, but it is pinned to %s", index, w.Filename, pin)
	case pinned:
		return pin, "the pin", nil
	case index == "":
		return "", "", fmt.Errorf("setup: the index publishes no sha256 for %s", w.Filename)
	}
	return index, "the index", nil
}

func (ix *Index) download(ctx context.Context, w Wheel, dst string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.URL, nil)
	if err != nil {
		return err
	}
	resp, err := ix.Client.Do(req)
	if err != nil {
		return fmt.Errorf("setup: download %s: %w", w.Filename, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("setup: download %s: %s", w.Filename, resp.Status)
	}
	total := resp.ContentLength
	if total <= 0 && w.Size > 0 {
		total = w.Size
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	var src io.Reader = resp.Body
	if ix.Progress != nil {
		src = &progressReader{r: resp.Body, file: w.Filename, total: total, report: ix.Progress}
		ix.Progress(w.Filename, 0, total)
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return fmt.Errorf("setup: download %s: %w", w.Filename, err)
	}
	return f.Close()
}

type progressReader struct {
	r      io.Reader
	file   string
	done   int64
	total  int64
	report func(file string, done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if n > 0 || errors.Is(err, io.EOF) {
		p.report(p.file, p.done, p.total)
	}
	return n, err
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Newest returns the highest version of name that starts with prefix + "." (or equals prefix) and has a
// manylinux wheel for arch: how a "==13.2.86.*" requirement is resolved.
func (ix *Index) Newest(ctx context.Context, name, prefix, arch string) (string, error) {
	files, err := ix.Files(ctx, name)
	if err != nil {
		return "", err
	}
	norm := strings.ToLower(strings.ReplaceAll(name, "-", "_")) + "-"
	best := ""
	for _, f := range files {
		fn := f.Filename
		if !strings.HasSuffix(fn, ".whl") || !strings.HasPrefix(strings.ToLower(fn), norm) ||
			!strings.Contains(fn, "manylinux") || !strings.Contains(fn, arch) {
			continue
		}
		v, _, _ := strings.Cut(fn[len(norm):], "-")
		if (v == prefix || strings.HasPrefix(v, prefix+".")) && versionLess(best, v) {
			best = v
		}
	}
	if best == "" {
		return "", fmt.Errorf("setup: the index %s has no manylinux %s wheel of %s==%s.*", ix.URL, arch, name, prefix)
	}
	return best, nil
}

// versionLess compares dotted numeric versions ("" is lowest); non-numeric parts compare as text.
func versionLess(a, b string) bool {
	if a == "" {
		return b != ""
	}
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, ea := strconv.Atoi(pa[i])
		nb, eb := strconv.Atoi(pb[i])
		switch {
		case ea == nil && eb == nil && na != nb:
			return na < nb
		case (ea != nil || eb != nil) && pa[i] != pb[i]:
			return pa[i] < pb[i]
		}
	}
	return len(pa) < len(pb)
}
