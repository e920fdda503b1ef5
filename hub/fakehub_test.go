package hub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	retryDelay = time.Millisecond
	os.Exit(m.Run())
}

// fakeFile is a file of the fake repository.
type fakeFile struct {
	content []byte
	lfs     bool   // served from the content host, with X-Linked-Etag = SHA-256
	serve   []byte // if set, what the content host actually sends (corruption)
}

// sha256Hex and gitBlobSHA1 are the hub's ETags for LFS and regular files.
func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func gitBlobSHA1(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func (f fakeFile) etag() string {
	if f.lfs {
		return sha256Hex(f.content)
	}
	return gitBlobSHA1(f.content)
}

// logEntry is one request received by the fake hub or content host.
type logEntry struct {
	server string // "hub" or "cdn"
	method string
	path   string // escaped path
	rng    string // Range header
	auth   string // Authorization header
}

// fakeHub behaves like huggingface.co for one repository: HEAD/GET /{repo}/resolve/{rev}/{path} with
// the hub's headers and error codes, LFS files redirected (302) to a second server, the content host,
// which honours Range requests.
type fakeHub struct {
	t        *testing.T
	hub, cdn *httptest.Server
	repo     string
	oldRepo  string // if set, a former name that redirects (relative 307) to repo
	commit   string
	token    string // if set, every request must carry it (a private repository)
	files    map[string]fakeFile

	mu          sync.Mutex
	log         []logEntry
	dropAfter   int64 // >0: the next content response is cut after this many bytes
	ignoreRange bool  // answer Range requests with the whole file (200)
	noRangeSize bool  // omit Content-Length from content responses (chunked)
	xet         bool  // LFS files are Xet-backed: X-Xet-Hash on their HEAD
	unavailable int   // answer this many content requests with 503
	stallAfter  int64 // >0: the next content response stops sending (without closing) after this many bytes
	// noLinkedSize: LFS redirects carry no X-Linked-Size but a Content-Length of their own (158, the
	// length of a redirect page), as some mirrors and proxies send them
	noLinkedSize bool
}

func newFakeHub(t *testing.T, files map[string]fakeFile) *fakeHub {
	t.Helper()
	h := &fakeHub{t: t, repo: "test-org/test-model", commit: randomHex(40), files: files}
	h.hub = httptest.NewServer(http.HandlerFunc(h.serveHub))
	h.cdn = httptest.NewServer(http.HandlerFunc(h.serveCDN))
	t.Cleanup(h.hub.Close)
	t.Cleanup(h.cdn.Close)
	return h
}

func randomHex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[rand.IntN(16)]
	}
	return string(b)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

// client returns a Client for this hub with a fresh cache.
func (h *fakeHub) client(t *testing.T) *Client {
	return &Client{Endpoint: h.hub.URL, CacheDir: t.TempDir(), HTTP: h.hub.Client()}
}

func (h *fakeHub) record(server string, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, logEntry{server: server, method: r.Method, path: r.URL.EscapedPath(),
		rng: r.Header.Get("Range"), auth: r.Header.Get("Authorization")})
}

// requests returns the requests received so far by server ("" for both).
func (h *fakeHub) requests(server string) []logEntry {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []logEntry
	for _, e := range h.log {
		if server == "" || e.server == server {
			out = append(out, e)
		}
	}
	return out
}

func (h *fakeHub) serveHub(w http.ResponseWriter, r *http.Request) {
	h.record("hub", r)
	parts := strings.SplitN(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/", 5)
	if len(parts) != 5 || parts[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	repo := parts[0] + "/" + parts[1]
	rev, err1 := url.PathUnescape(parts[3])
	file, err2 := url.PathUnescape(parts[4])
	if err1 != nil || err2 != nil {
		http.Error(w, "bad escape", http.StatusBadRequest)
		return
	}
	if h.oldRepo != "" && repo == h.oldRepo {
		w.Header().Set("Location", "/"+h.repo+"/resolve/"+parts[3]+"/"+parts[4])
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	auth := r.Header.Get("Authorization")
	if h.token != "" && auth != "" && auth != "Bearer "+h.token {
		w.Header().Set("X-Error-Message", "Invalid credentials in Authorization header")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if repo != h.repo || (h.token != "" && auth == "") {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		w.Header().Set("X-Error-Message", "Repository not found")
		status := http.StatusNotFound
		if r.Header.Get("Authorization") == "" {
			status = http.StatusUnauthorized // the hub's answer to anonymous requests
		}
		w.WriteHeader(status)
		return
	}
	switch rev {
	case "main", h.commit, "refs/pr/1", "v1.0":
	default:
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", h.commit)
	f, ok := h.files[file]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		w.Header().Set("X-Error-Message", "Entry not found")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if f.lfs {
		w.Header().Set("ETag", `"`+gitBlobSHA1([]byte("version https://git-lfs.github.com/spec/v1\n"+file))+`"`)
		w.Header().Set("X-Linked-Etag", `"`+f.etag()+`"`)
		if h.noLinkedSize {
			w.Header().Set("Content-Length", "158")
		} else {
			w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.content)))
		}
		w.Header().Set("Location", h.cdn.URL+"/blobs/"+f.etag()+"?X-Amz-Signature=secret")
		if h.xet {
			w.Header().Set("X-Xet-Hash", randomHex(64))
		}
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+f.etag()+`"`)
	h.serveContent(w, r, f.content)
}

func (h *fakeHub) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.record("cdn", r)
	if r.URL.Query().Get("X-Amz-Signature") != "secret" {
		http.Error(w, "unsigned", http.StatusForbidden)
		return
	}
	sha := strings.TrimPrefix(r.URL.Path, "/blobs/")
	for _, f := range h.files {
		if f.lfs && f.etag() == sha {
			data := f.content
			if f.serve != nil {
				data = f.serve
			}
			h.serveContent(w, r, data)
			return
		}
	}
	http.NotFound(w, r)
}

// serveContent answers a GET or HEAD for data, honouring "Range: bytes=N-" and the configured faults.
func (h *fakeHub) serveContent(w http.ResponseWriter, r *http.Request, data []byte) {
	h.mu.Lock()
	drop, ignoreRange, chunked, stall := h.dropAfter, h.ignoreRange, h.noRangeSize, h.stallAfter
	unavailable := h.unavailable > 0 && r.Method == http.MethodGet
	if r.Method == http.MethodGet {
		h.dropAfter, h.stallAfter = 0, 0
		if unavailable {
			h.unavailable--
		}
	}
	h.mu.Unlock()
	if unavailable {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}

	start := 0
	if rng := r.Header.Get("Range"); rng != "" && !ignoreRange {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"))
		if err != nil || n < 0 {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		if n >= len(data) {
			w.Header().Set("Content-Range", "bytes */"+strconv.Itoa(len(data)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
	}
	body := data[start:]
	if !chunked {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	if start > 0 {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if r.Method != http.MethodGet {
		return
	}
	if drop > 0 && drop < int64(len(body)) {
		w.Write(body[:drop])
		conn, _, err := http.NewResponseController(w).Hijack() // flushes what was written
		if err != nil {
			h.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
		return
	}
	if stall > 0 && stall < int64(len(body)) {
		w.Write(body[:stall])
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return
	}
	w.Write(body)
}

// serveLFS makes the content host send data instead of the content of every LFS file.
func (h *fakeHub) serveLFS(data []byte) {
	for name, f := range h.files {
		if f.lfs {
			f.serve = data
			h.files[name] = f
		}
	}
}

// cacheFolder is the repository's folder in a cache.
func cacheFolder(cacheDir, repo string) string {
	return filepath.Join(cacheDir, "models--"+strings.ReplaceAll(repo, "/", "--"))
}

// prefillCache lays out files in cacheDir exactly as huggingface_hub does: blobs named by ETag,
// snapshots/{commit}/{path} relative symlinks and refs/{revision}.
func prefillCache(t *testing.T, cacheDir, repo, revision, commit string, files map[string]fakeFile) {
	t.Helper()
	dir := cacheFolder(cacheDir, repo)
	for name, f := range files {
		blob := filepath.Join(dir, "blobs", f.etag())
		mustMkdir(t, filepath.Dir(blob))
		if err := os.WriteFile(blob, f.content, 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "snapshots", commit, filepath.FromSlash(name))
		mustMkdir(t, filepath.Dir(link))
		target := strings.Repeat("../", strings.Count(name, "/")+2) + "blobs/" + f.etag()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	if revision != commit {
		ref := filepath.Join(dir, "refs", filepath.FromSlash(revision))
		mustMkdir(t, filepath.Dir(ref))
		if err := os.WriteFile(ref, []byte(commit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mustMkdir(t *testing.T, d string) {
	t.Helper()
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
}

// noNetwork is an endpoint that fails the test if anything is requested from it.
func noNetwork(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.Error(w, "offline", http.StatusServiceUnavailable)
	}))
	t.Cleanup(s.Close)
	return s
}
