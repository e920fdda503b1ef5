package hub

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sdsafety/safety/internal/flock"
)

var (
	configJSON = []byte(`{"_name_or_path": "CompVis/stable-diffusion-safety-checker", "model_type": "clip"}` + "\n")
	weightsBin = randomBytes(300_000)
)

func testFiles() map[string]fakeFile {
	return map[string]fakeFile{
		"config.json":                      {content: configJSON},
		"model.safetensors":                {content: weightsBin, lfs: true},
		"safety_checker/config.json":       {content: configJSON},
		"safety_checker/model.safetensors": {content: weightsBin, lfs: true},
	}
}

// TestDownload covers successful downloads: the file's content, its snapshot symlink, its blob and
// refs/{revision} must be exactly as huggingface_hub would leave them.
func TestDownload(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		revision string // "" means main
		setup    func(t *testing.T, h *fakeHub, c *Client)
		check    func(t *testing.T, h *fakeHub, c *Client)
	}{
		{
			name: "regular file",
			file: "config.json",
			check: func(t *testing.T, h *fakeHub, c *Client) {
				reqs := h.requests("")
				if len(reqs) != 2 || reqs[0].method != "HEAD" || reqs[1].method != "GET" {
					t.Errorf("requests = %+v, want HEAD then GET to the hub", reqs)
				}
			},
		},
		{
			name: "LFS file behind a redirect to the content host, token not sent there",
			file: "model.safetensors",
			setup: func(t *testing.T, h *fakeHub, c *Client) {
				h.token, c.Token = "hf_secret", "hf_secret"
			},
			check: func(t *testing.T, h *fakeHub, c *Client) {
				hub, cdn := h.requests("hub"), h.requests("cdn")
				if len(hub) != 1 || hub[0].method != "HEAD" || hub[0].auth != "Bearer hf_secret" {
					t.Errorf("hub requests = %+v, want one authorized HEAD", hub)
				}
				if len(cdn) != 1 || cdn[0].method != "GET" {
					t.Errorf("content host requests = %+v, want one GET (the HEAD must not follow the redirect)", cdn)
				}
				for _, r := range cdn {
					if r.auth != "" {
						t.Errorf("token sent to the content host: %q", r.auth)
					}
				}
			},
		},
		{
			name: "file in a subfolder",
			file: "safety_checker/model.safetensors",
		},
		{
			name:     "revision that is a commit hash",
			file:     "config.json",
			revision: "commit",
			check: func(t *testing.T, h *fakeHub, c *Client) {
				if _, err := os.Stat(filepath.Join(cacheFolder(c.CacheDir, h.repo), "refs")); err == nil {
					t.Error("refs written for a commit-hash revision")
				}
				n := len(h.requests(""))
				if _, err := c.Download(context.Background(), h.repo, h.commit, "config.json"); err != nil {
					t.Fatal(err)
				}
				if m := len(h.requests("")); m != n {
					t.Errorf("a cached file at a commit hash made %d requests", m-n)
				}
			},
		},
		{
			name:     "revision with a slash is escaped as one segment",
			file:     "config.json",
			revision: "refs/pr/1",
			check: func(t *testing.T, h *fakeHub, c *Client) {
				if p := h.requests("hub")[0].path; !strings.Contains(p, "/resolve/refs%2Fpr%2F1/config.json") {
					t.Errorf("request path %q, want the revision escaped", p)
				}
			},
		},
		{
			name: "renamed repository: relative redirect followed by HEAD",
			file: "model.safetensors",
			setup: func(t *testing.T, h *fakeHub, c *Client) {
				h.oldRepo = "old-org/old-name" // requested by its old name
			},
		},
		{
			name: "dropped connection resumed automatically with a Range request",
			file: "model.safetensors",
			setup: func(t *testing.T, h *fakeHub, c *Client) {
				h.dropAfter = 100_000
			},
			check: func(t *testing.T, h *fakeHub, c *Client) {
				cdn := h.requests("cdn")
				if len(cdn) != 2 || cdn[0].rng != "" || cdn[1].rng != "bytes=100000-" {
					t.Errorf("content requests = %+v, want a full GET then Range: bytes=100000-", cdn)
				}
			},
		},
		{
			name: "stale partial file and a server that ignores Range",
			file: "model.safetensors",
			setup: func(t *testing.T, h *fakeHub, c *Client) {
				h.ignoreRange = true
				blobs := filepath.Join(cacheFolder(c.CacheDir, h.repo), "blobs")
				mustMkdir(t, blobs)
				if err := os.WriteFile(filepath.Join(blobs, sha256Hex(weightsBin)+".incomplete"), randomBytes(5000), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, h *fakeHub, c *Client) {
				if cdn := h.requests("cdn"); len(cdn) != 1 || cdn[0].rng != "bytes=5000-" {
					t.Errorf("content requests = %+v, want one GET with Range: bytes=5000-", cdn)
				}
			},
		},
		{
			name: "Xet-backed file: GET from the hub, redirected to the content host without the token",
			file: "model.safetensors",
			setup: func(t *testing.T, h *fakeHub, c *Client) {
				h.xet, h.token, c.Token = true, "hf_secret", "hf_secret"
			},
			check: func(t *testing.T, h *fakeHub, c *Client) {
				hub, cdn := h.requests("hub"), h.requests("cdn")
				if len(hub) != 2 || hub[1].method != "GET" || hub[1].auth != "Bearer hf_secret" ||
					!strings.Contains(hub[1].path, "/resolve/"+h.commit+"/") {
					t.Errorf("hub requests = %+v, want HEAD then an authorized GET at the commit", hub)
				}
				if len(cdn) != 1 || cdn[0].auth != "" {
					t.Errorf("content host requests = %+v, want one GET without the token", cdn)
				}
			},
		},
		{
			name: "content host temporarily unavailable",
			file: "model.safetensors",
			setup: func(t *testing.T, h *fakeHub, c *Client) {
				h.unavailable = 2
			},
			check: func(t *testing.T, h *fakeHub, c *Client) {
				if n := len(h.requests("cdn")); n != 3 {
					t.Errorf("%d content requests, want 3", n)
				}
			},
		},
		{
			name: "stalled transfer resumed",
			file: "model.safetensors",
			setup: func(t *testing.T, h *fakeHub, c *Client) {
				h.stallAfter, c.StallTimeout = 80_000, 100*time.Millisecond
			},
			check: func(t *testing.T, h *fakeHub, c *Client) {
				cdn := h.requests("cdn")
				if len(cdn) != 2 || cdn[1].rng != "bytes=80000-" {
					t.Errorf("content requests = %+v, want a resume from byte 80000", cdn)
				}
			},
		},
		{
			name: "content without Content-Length",
			file: "model.safetensors",
			setup: func(t *testing.T, h *fakeHub, c *Client) {
				h.noRangeSize = true
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHub(t, testFiles())
			c := h.client(t)
			repo := h.repo
			if tt.setup != nil {
				tt.setup(t, h, c)
			}
			if h.oldRepo != "" {
				repo = h.oldRepo
			}
			revision := tt.revision
			if revision == "commit" {
				revision = h.commit
			}
			got, err := c.Download(context.Background(), repo, revision, tt.file)
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			f := h.files[tt.file]
			checkCachedFile(t, c.CacheDir, repo, h.commit, tt.file, f, got)
			lock := filepath.Join(c.CacheDir, ".locks", "models--"+strings.ReplaceAll(repo, "/", "--"), f.etag()+".lock")
			if _, err := os.Stat(lock); err != nil {
				t.Errorf("lock file: %v", err)
			}
			if revision == "" {
				revision = "main"
			}
			if revision != h.commit {
				ref, err := os.ReadFile(filepath.Join(cacheFolder(c.CacheDir, repo), "refs", filepath.FromSlash(revision)))
				if err != nil || string(ref) != h.commit {
					t.Errorf("refs/%s = %q, %v; want %s", revision, ref, err, h.commit)
				}
			}
			if tt.check != nil {
				tt.check(t, h, c)
			}
		})
	}
}

// checkCachedFile checks a downloaded file and its cache entries.
func checkCachedFile(t *testing.T, cacheDir, repo, commit, file string, f fakeFile, got string) {
	t.Helper()
	dir := cacheFolder(cacheDir, repo)
	want := filepath.Join(dir, "snapshots", commit, filepath.FromSlash(file))
	if got != want {
		t.Errorf("path = %s, want %s", got, want)
	}
	target, err := os.Readlink(got)
	wantTarget := strings.Repeat("../", strings.Count(file, "/")+2) + "blobs/" + f.etag()
	if err != nil || target != wantTarget {
		t.Errorf("symlink target = %q (%v), want %q", target, err, wantTarget)
	}
	data, err := os.ReadFile(got)
	if err != nil || !bytes.Equal(data, f.content) {
		t.Errorf("content differs (%d bytes, want %d; %v)", len(data), len(f.content), err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "blobs"))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".incomplete") || strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover %s in blobs", e.Name())
		}
	}
}

// TestDownloadErrors covers failures: the error class, its message, and what is left in the cache.
func TestDownloadErrors(t *testing.T) {
	corrupt := bytes.Clone(weightsBin)
	corrupt[1234] ^= 0xff
	tests := []struct {
		name    string
		file    string
		setup   func(h *fakeHub, c *Client)
		repo    string
		rev     string
		wantErr error
		wantMsg []string
		check   func(t *testing.T, h *fakeHub, c *Client)
	}{
		{
			name:    "wrong checksum",
			file:    "model.safetensors",
			setup:   func(h *fakeHub, c *Client) { h.serveLFS(corrupt) },
			wantErr: ErrChecksum,
			wantMsg: []string{"model.safetensors", "SHA-256"},
		},
		{
			name:    "more bytes than announced",
			file:    "model.safetensors",
			setup:   func(h *fakeHub, c *Client) { h.serveLFS(append(bytes.Clone(weightsBin), "trailing"...)) },
			wantErr: ErrChecksum,
		},
		{
			name:    "fewer bytes than announced",
			file:    "model.safetensors",
			setup:   func(h *fakeHub, c *Client) { h.serveLFS(weightsBin[:1000]) },
			wantErr: ErrChecksum,
			wantMsg: []string{"1000 bytes", "300000"},
		},
		{
			name: "more bytes than announced, without Content-Length",
			file: "model.safetensors",
			setup: func(h *fakeHub, c *Client) {
				h.noRangeSize = true
				h.serveLFS(append(bytes.Clone(weightsBin), "trailing"...))
			},
			wantErr: ErrChecksum,
		},
		{
			name: "private repository without a token",
			file: "config.json",
			setup: func(h *fakeHub, c *Client) {
				h.token = "hf_secret"
			},
			wantErr: ErrUnauthorized,
			wantMsg: []string{"HF_TOKEN", "401", "test-org/test-model", "config.json"},
		},
		{
			name: "private repository with a wrong token",
			file: "config.json",
			setup: func(h *fakeHub, c *Client) {
				h.token, c.Token = "hf_secret", "hf_wrong"
			},
			wantErr: ErrUnauthorized,
			wantMsg: []string{"token in use", "Invalid credentials"},
		},
		{
			name:    "missing file",
			file:    "missing.json",
			wantErr: ErrNotFound,
			wantMsg: []string{"missing.json", "404", "no such file"},
			check: func(t *testing.T, h *fakeHub, c *Client) {
				marker := filepath.Join(cacheFolder(c.CacheDir, h.repo), ".no_exist", h.commit, "missing.json")
				if _, err := os.Stat(marker); err != nil {
					t.Errorf(".no_exist marker: %v", err)
				}
				_, err := c.ResolveCached(h.repo, "main", "missing.json")
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("ResolveCached after a 404 = %v, want ErrNotFound", err)
				}
			},
		},
		{
			name:    "missing revision",
			file:    "config.json",
			rev:     "no-such-branch",
			wantErr: ErrNotFound,
			wantMsg: []string{"no such revision", "no-such-branch"},
		},
		{
			name:    "missing repository",
			file:    "config.json",
			repo:    "test-org/other",
			setup:   func(h *fakeHub, c *Client) { c.Token = "hf_any" },
			wantErr: ErrNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHub(t, testFiles())
			c := h.client(t)
			if tt.setup != nil {
				tt.setup(h, c)
			}
			repo := h.repo
			if tt.repo != "" {
				repo = tt.repo
			}
			got, err := c.Download(context.Background(), repo, tt.rev, tt.file)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Download = %q, %v; want %v", got, err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			// Nothing that looks complete: no blob without .incomplete, no snapshot entry.
			dir := cacheFolder(c.CacheDir, repo)
			entries, _ := os.ReadDir(filepath.Join(dir, "blobs"))
			for _, e := range entries {
				if !strings.HasSuffix(e.Name(), ".incomplete") {
					t.Errorf("blob %s left in the cache", e.Name())
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "snapshots")); err == nil {
				t.Error("snapshot entry created")
			}
			if tt.check != nil {
				tt.check(t, h, c)
			}
		})
	}
}

// TestDownloadResumeNextCall: with retries off, a dropped connection leaves only the .incomplete
// file, and the next call resumes it with a Range request.
func TestDownloadResumeNextCall(t *testing.T) {
	h := newFakeHub(t, testFiles())
	c := h.client(t)
	c.Retries = -1
	h.dropAfter = 123_456

	_, err := c.Download(context.Background(), h.repo, "", "model.safetensors")
	if err == nil || errors.Is(err, ErrChecksum) {
		t.Fatalf("first Download = %v, want a transfer error", err)
	}
	if !strings.Contains(err.Error(), "run again to resume") {
		t.Errorf("error %q does not say the download can be resumed", err)
	}
	blob := filepath.Join(cacheFolder(c.CacheDir, h.repo), "blobs", sha256Hex(weightsBin))
	if _, err := os.Stat(blob); err == nil {
		t.Fatal("complete-looking blob after an interrupted download")
	}
	fi, err := os.Stat(blob + ".incomplete")
	if err != nil || fi.Size() != 123_456 {
		t.Fatalf(".incomplete = %v, %v; want 123456 bytes", fi, err)
	}
	if _, err := os.Stat(filepath.Join(cacheFolder(c.CacheDir, h.repo), "snapshots")); err == nil {
		t.Error("snapshot entry created for an interrupted download")
	}

	got, err := c.Download(context.Background(), h.repo, "", "model.safetensors")
	if err != nil {
		t.Fatalf("second Download: %v", err)
	}
	checkCachedFile(t, c.CacheDir, h.repo, h.commit, "model.safetensors", h.files["model.safetensors"], got)
	cdn := h.requests("cdn")
	if last := cdn[len(cdn)-1]; last.rng != "bytes=123456-" {
		t.Errorf("resume request Range = %q, want bytes=123456-", last.rng)
	}
}

// TestDownloadOffline resolves a cache laid out by hand exactly as huggingface_hub does, with no
// server at all.
func TestDownloadOffline(t *testing.T) {
	files := map[string]fakeFile{
		"config.json":                      {content: configJSON},
		"safety_checker/model.safetensors": {content: weightsBin, lfs: true},
	}
	commit := randomHex(40)
	cache := t.TempDir()
	repo := "CompVis/stable-diffusion-safety-checker"
	prefillCache(t, cache, repo, "main", commit, files)
	c := &Client{Endpoint: noNetwork(t).URL, CacheDir: cache, Offline: true}

	for _, tt := range []struct{ revision, file string }{
		{"main", "config.json"},
		{"", "config.json"},
		{commit, "config.json"},
		{"main", "safety_checker/model.safetensors"},
	} {
		got, err := c.Download(context.Background(), repo, tt.revision, tt.file)
		if err != nil {
			t.Errorf("Download(%q, %q): %v", tt.revision, tt.file, err)
			continue
		}
		checkCachedFile(t, cache, repo, commit, tt.file, files[tt.file], got)
		if p, err := c.ResolveCached(repo, tt.revision, tt.file); err != nil || p != got {
			t.Errorf("ResolveCached = %q, %v; want %q", p, err, got)
		}
	}

	// Not cached: ErrOffline, naming the repository, revision and file and saying what to do.
	_, err := c.Download(context.Background(), repo, "main", "pytorch_model.bin")
	if !errors.Is(err, ErrOffline) || !errors.Is(err, ErrNotCached) {
		t.Fatalf("Download of an uncached file = %v, want ErrOffline and ErrNotCached", err)
	}
	for _, m := range []string{repo, `"main"`, "pytorch_model.bin", "HF_HUB_OFFLINE"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %s", err, m)
		}
	}
	if _, err := c.ResolveCached(repo, "v2", "config.json"); !errors.Is(err, ErrNotCached) {
		t.Errorf("ResolveCached of an unknown revision = %v, want ErrNotCached", err)
	}
}

func TestDownloadOfflineEmptyCache(t *testing.T) {
	c := &Client{Endpoint: noNetwork(t).URL, CacheDir: t.TempDir(), Offline: true}
	_, err := c.Download(context.Background(), DefaultRepo, "main", "config.json")
	if !errors.Is(err, ErrOffline) {
		t.Fatalf("err = %v, want ErrOffline", err)
	}
	_, err = c.FirstAvailable(context.Background(), DefaultRepo, "main", "", WeightCandidates(false))
	if !errors.Is(err, ErrOffline) {
		t.Fatalf("FirstAvailable err = %v, want ErrOffline", err)
	}
	_, _, err = FetchModel(context.Background(), c, "", "", "", false)
	if !errors.Is(err, ErrOffline) {
		t.Fatalf("FetchModel err = %v, want ErrOffline", err)
	}
}

// TestDownloadFallsBackToCache: when the hub cannot be reached, a cached copy of the revision is used.
func TestDownloadFallsBackToCache(t *testing.T) {
	h := newFakeHub(t, testFiles())
	c := h.client(t)
	if _, err := c.Download(context.Background(), h.repo, "main", "config.json"); err != nil {
		t.Fatal(err)
	}
	h.hub.Close()
	got, err := c.Download(context.Background(), h.repo, "main", "config.json")
	if err != nil {
		t.Fatalf("Download with the hub down: %v", err)
	}
	checkCachedFile(t, c.CacheDir, h.repo, h.commit, "config.json", h.files["config.json"], got)
	if _, err := c.Download(context.Background(), h.repo, "main", "model.safetensors"); err == nil {
		t.Error("uncached file downloaded with the hub down")
	}
}

func TestDownloadProgress(t *testing.T) {
	h := newFakeHub(t, testFiles())
	c := h.client(t)
	h.dropAfter = 70_000
	type call struct {
		file        string
		done, total int64
	}
	var calls []call
	c.Progress = func(file string, done, total int64) { calls = append(calls, call{file, done, total}) }
	if _, err := c.Download(context.Background(), h.repo, "", "model.safetensors"); err != nil {
		t.Fatal(err)
	}
	if len(calls) < 3 {
		t.Fatalf("progress called %d times", len(calls))
	}
	size := int64(len(weightsBin))
	for i, cl := range calls {
		if cl.file != "model.safetensors" || cl.total != size {
			t.Errorf("call %d = %+v, want file model.safetensors, total %d", i, cl, size)
		}
		if i > 0 && cl.done < calls[i-1].done {
			t.Errorf("progress went back: %+v after %+v", cl, calls[i-1])
		}
	}
	if last := calls[len(calls)-1]; last.done != size {
		t.Errorf("last progress call = %+v, want done = %d", last, size)
	}
}

// TestDownloadConcurrent: goroutines fetching the same file share one download.
func TestDownloadConcurrent(t *testing.T) {
	h := newFakeHub(t, testFiles())
	c := h.client(t)
	var wg sync.WaitGroup
	paths := make([]string, 6)
	errs := make([]error, len(paths))
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = c.Download(context.Background(), h.repo, "main", "model.safetensors")
		}()
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		checkCachedFile(t, c.CacheDir, h.repo, h.commit, "model.safetensors", h.files["model.safetensors"], paths[i])
	}
	if n := len(h.requests("cdn")); n != 1 {
		t.Errorf("%d content downloads, want 1", n)
	}
}

// TestLockWaitsAndCancels: a held blob lock blocks a download until its context ends.
func TestLockWaitsAndCancels(t *testing.T) {
	h := newFakeHub(t, testFiles())
	c := h.client(t)
	lock := filepath.Join(c.CacheDir, ".locks", "models--test-org--test-model", sha256Hex(weightsBin)+".lock")
	mustMkdir(t, filepath.Dir(lock))
	unlock, err := flock.Lock(context.Background(), lock)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = c.Download(ctx, h.repo, "main", "model.safetensors")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Download with the lock held = %v, want a deadline error", err)
	}
	if n := len(h.requests("cdn")); n != 0 {
		t.Errorf("%d content requests while the lock was held", n)
	}
}

func TestSnapshot(t *testing.T) {
	h := newFakeHub(t, testFiles())
	c := h.client(t)
	dir, err := c.Snapshot(context.Background(), h.repo, "v1.0", []string{"config.json", "safety_checker/config.json", "model.safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cacheFolder(c.CacheDir, h.repo), "snapshots", h.commit); dir != want {
		t.Errorf("dir = %s, want %s", dir, want)
	}
	for _, f := range []string{"config.json", "safety_checker/config.json", "model.safetensors"} {
		if data, err := os.ReadFile(filepath.Join(dir, f)); err != nil || !bytes.Equal(data, h.files[f].content) {
			t.Errorf("%s: %v", f, err)
		}
	}
	// Only the first request names the branch: the rest are pinned to the commit it resolved to.
	for i, r := range h.requests("hub") {
		if (i == 0) != strings.Contains(r.path, "/resolve/v1.0/") {
			t.Errorf("request %d %s %s: want only the first one to name v1.0", i, r.method, r.path)
		}
	}
	if _, err := c.Snapshot(context.Background(), h.repo, "main", nil); err == nil {
		t.Error("Snapshot of no files succeeded")
	}
}

func TestInvalidArguments(t *testing.T) {
	c := &Client{Endpoint: noNetwork(t).URL, CacheDir: t.TempDir()}
	for _, tt := range []struct{ repo, rev, file string }{
		{"a/b/c", "main", "config.json"},
		{"", "main", "config.json"},
		{"org/name", "main", "../config.json"},
		{"org/name", "main", "/etc/passwd"},
		{"org/name", "main", "a//b"},
		{"org/name", "../x", "config.json"},
		{"org/name", "main", ""},
	} {
		if _, err := c.Download(context.Background(), tt.repo, tt.rev, tt.file); err == nil {
			t.Errorf("Download(%q, %q, %q) succeeded", tt.repo, tt.rev, tt.file)
		}
	}
}
