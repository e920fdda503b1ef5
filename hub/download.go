package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sdsafety/safety/internal/flock"
)

// maxRedirects bounds the redirects followed by one request.
const maxRedirects = 10

// retryDelay is the pause before resuming an interrupted download (the first one; it grows linearly).
// A variable so that tests can shorten it.
var retryDelay = time.Second

// errStalled is the cause given to a download cancelled for receiving no data for StallTimeout.
var errStalled = errors.New("download stalled")

// fileMeta is what the hub says about one file at one revision (huggingface_hub's HfFileMetadata).
type fileMeta struct {
	commit   string // X-Repo-Commit
	etag     string // X-Linked-Etag, else ETag, without quotes or W/
	size     int64  // X-Linked-Size, else Content-Length; -1 if unknown
	location string // URL to GET the content from
	auth     bool   // whether the token may be sent to location
}

// Download returns the local path of a file of a hub repository at a revision (a branch, tag or commit
// hash; "" means "main"), downloading it into the cache first if needed. The path is the file's
// snapshot entry, snapshots/{commit}/{path}, a symlink to its blob, exactly as huggingface_hub lays it
// out, so Python code finds it too and vice versa.
//
// Like hf_hub_download it makes one HEAD request to learn the revision's commit and the file's ETag,
// unless the revision is a commit hash whose file is already cached. When the hub cannot be reached
// (or answers 401/403 or 5xx) a cached copy of the revision is used if there is one; a 404 for the
// file or revision is final. In offline mode only the cache is used.
//
// Errors wrap [ErrNotFound], [ErrUnauthorized], [ErrOffline] (with [ErrNotCached]), [ErrChecksum] or
// the context's error, and name the repository, revision and file.
func (c *Client) Download(ctx context.Context, repo, revision, file string) (string, error) {
	p, _, err := c.settings().download(ctx, repo, revision, file, nil)
	return p, err
}

// Snapshot downloads several files of one revision (repository paths) and returns the snapshot
// directory that holds them, snapshots/{commit}. All files come from the same commit: the first one
// resolves the revision, the others are fetched at its commit hash.
func (c *Client) Snapshot(ctx context.Context, repo, revision string, files []string) (string, error) {
	if len(files) == 0 {
		return "", fmt.Errorf("hub: snapshot of %s: no files requested", repo)
	}
	s := c.settings()
	_, commit, err := s.download(ctx, repo, revision, files[0], nil)
	if err != nil {
		return "", err
	}
	for _, f := range files[1:] {
		if _, _, err := s.download(ctx, repo, commit, f, nil); err != nil {
			return "", err
		}
	}
	return newRepoCache(s.cacheDir, repo).snapshotDir(commit), nil
}

// ResolveCached returns the snapshot path of a cached file without any network access, following
// refs/{revision} for a branch or tag ("" means "main"). A file that is not cached gives an error
// wrapping [ErrNotCached]; one the cache records as absent (.no_exist) wraps [ErrNotFound].
func (c *Client) ResolveCached(repo, revision, file string) (string, error) {
	s := c.settings()
	if revision == "" {
		revision = DefaultRevision
	}
	if err := checkArgs(repo, revision, file); err != nil {
		return "", err
	}
	p, _, err := newRepoCache(s.cacheDir, repo).lookup(revision, file)
	if err != nil {
		return "", fmt.Errorf("hub: %s: %q at revision %q in cache %s: %w", repo, file, revision, s.cacheDir, err)
	}
	return p, nil
}

// FirstAvailable returns the repository path (subfolder/name) of the first candidate file that exists
// in the repository at the revision ("" means "main"). Online, it asks the hub (HEAD) about each
// candidate in order: a 404 moves on to the next one, which the cache then records in .no_exist; any
// other failure (401/403, network) falls back to the cache. Offline, or on such a failure, it returns
// the first candidate that is in the cache. Files known from the cache are decided without a request
// when the revision is a commit hash.
//
// When no candidate exists the error wraps [ErrNotFound]; after a failure it wraps that failure
// ([ErrUnauthorized] says a token may be needed), and offline it wraps [ErrOffline].
func (c *Client) FirstAvailable(ctx context.Context, repo, revision, subfolder string, candidates []string) (string, error) {
	p, _, err := c.settings().firstAvailable(ctx, repo, revision, subfolder, candidates)
	return p, err
}

// firstAvailable implements FirstAvailable. It also returns the metadata of the file it chose when it
// asked the hub for it (nil when the cache decided), so that a download that follows needs no second
// request for it.
func (s *settings) firstAvailable(ctx context.Context, repo, revision, subfolder string, candidates []string) (string, *fileMeta, error) {
	if revision == "" {
		revision = DefaultRevision
	}
	if err := checkArgs(repo, revision); err != nil {
		return "", nil, err
	}
	if len(candidates) == 0 {
		return "", nil, fmt.Errorf("hub: %s: no candidate files given", repo)
	}
	paths := make([]string, len(candidates))
	for i, name := range candidates {
		paths[i] = joinRepoPath(subfolder, name)
		if err := checkRelPath("file path", paths[i]); err != nil {
			return "", nil, err
		}
	}
	rc := newRepoCache(s.cacheDir, repo)

	var failure error // a non-definitive HEAD failure: decide from the cache instead
	if !s.offline {
		for _, p := range paths {
			if isCommitHash(revision) {
				if _, _, err := rc.lookup(revision, p); err == nil {
					return p, nil, nil
				} else if errors.Is(err, ErrNotFound) {
					continue
				}
			}
			meta, err := s.head(ctx, repo, revision, p)
			if err == nil {
				return p, meta, nil
			}
			if ctx.Err() != nil {
				return "", nil, fmt.Errorf("hub: %s: looking for %q at revision %q: %w", repo, p, revision, ctx.Err())
			}
			var se *statusError
			if errors.As(err, &se) && se.definitive() {
				s.recordMissing(rc, revision, p, se)
				continue
			}
			failure = err
			break
		}
		if failure == nil {
			return "", nil, fmt.Errorf("hub: %s: none of %s exists at revision %q: %w", repo, strings.Join(paths, ", "), revision, ErrNotFound)
		}
	}

	for _, p := range paths {
		if _, _, err := rc.lookup(revision, p); err == nil {
			return p, nil, nil
		}
	}
	if failure != nil {
		return "", nil, fmt.Errorf("hub: %s: looking for %s at revision %q (and none is cached): %w", repo, strings.Join(paths, ", "), revision, failure)
	}
	return "", nil, fmt.Errorf("hub: %s: %w and none of %s at revision %q is cached (%w: cache %s); turn offline mode off (unset HF_HUB_OFFLINE) and run again to download it",
		repo, ErrOffline, strings.Join(paths, ", "), revision, ErrNotCached, s.cacheDir)
}

// download implements Download and also returns the commit the file was resolved at. known, when not
// nil, is the file's metadata from a request just made (firstAvailable's), which is used instead of
// asking again.
func (s *settings) download(ctx context.Context, repo, revision, file string, known *fileMeta) (string, string, error) {
	if revision == "" {
		revision = DefaultRevision
	}
	if err := checkArgs(repo, revision, file); err != nil {
		return "", "", err
	}
	wrap := func(err error) error {
		return fmt.Errorf("hub: download %q from %s at revision %q: %w", file, repo, revision, err)
	}
	rc := newRepoCache(s.cacheDir, repo)

	// A commit hash is immutable: a cached file needs no request.
	if isCommitHash(revision) && isRegular(rc.pointerPath(revision, file)) {
		return rc.pointerPath(revision, file), revision, nil
	}

	if s.offline {
		p, commit, err := rc.lookup(revision, file)
		switch {
		case err == nil:
			return p, commit, nil
		case errors.Is(err, ErrNotFound):
			return "", "", wrap(err)
		}
		return "", "", fmt.Errorf("hub: %q of %s at revision %q: %w and the file is %w (cache %s); turn offline mode off (unset HF_HUB_OFFLINE) and run again to download it",
			file, repo, revision, ErrOffline, ErrNotCached, s.cacheDir)
	}

	meta, err := known, error(nil)
	if meta == nil {
		meta, err = s.head(ctx, repo, revision, file)
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", "", wrap(ctx.Err())
		}
		var se *statusError
		if errors.As(err, &se) && se.definitive() {
			s.recordMissing(rc, revision, file, se)
			return "", "", wrap(err)
		}
		// Hub unreachable, repository hidden, server error: use the cache if it has the file.
		if p, commit, cerr := rc.lookup(revision, file); cerr == nil {
			return p, commit, nil
		}
		return "", "", wrap(fmt.Errorf("%w (and the file is not in the cache %s)", err, s.cacheDir))
	}

	pointer := rc.pointerPath(meta.commit, file)
	if isRegular(pointer) {
		_ = rc.writeRef(revision, meta.commit) // best effort: the cache may be read-only
		return pointer, meta.commit, nil
	}

	blob := rc.blobPath(meta.etag)
	lock := rc.lockPath(meta.etag)
	for _, d := range []string{filepath.Dir(blob), filepath.Dir(lock)} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			return "", "", wrap(err)
		}
	}
	unlock, err := flock.Lock(ctx, lock)
	if err != nil {
		return "", "", wrap(fmt.Errorf("lock %s: %w", lock, err))
	}
	defer unlock()

	if !isRegular(blob) { // another process may have finished it while we waited for the lock
		if err := s.fetch(ctx, meta, file, blob); err != nil {
			return "", "", wrap(err)
		}
	}
	if _, err := rc.link(meta.commit, file, meta.etag); err != nil {
		return "", "", wrap(err)
	}
	if err := rc.writeRef(revision, meta.commit); err != nil {
		return "", "", wrap(err)
	}
	return pointer, meta.commit, nil
}

// recordMissing caches the hub's statement that a file does not exist (a 404 naming the commit), as
// huggingface_hub does: a .no_exist marker and the revision's ref.
func (s *settings) recordMissing(rc repoCache, revision, file string, se *statusError) {
	if se.code != "EntryNotFound" || !safeComponent(se.commit) {
		return
	}
	rc.markMissing(se.commit, file)
	_ = rc.writeRef(revision, se.commit)
}

// newRequest builds a request with the headers every hub request carries.
func (s *settings) newRequest(ctx context.Context, method, u string, auth bool) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	// No transparent compression: sizes and ranges must be those of the file itself.
	req.Header.Set("Accept-Encoding", "identity")
	if auth && s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	return req, nil
}

// head fetches a file's metadata like huggingface_hub's get_hf_file_metadata: a HEAD request to the
// resolve URL that follows relative redirects only (a renamed repository), not those to a content host.
func (s *settings) head(ctx context.Context, repo, revision, file string) (*fileMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, s.metaTimeout)
	defer cancel()

	start := resolveURL(s.endpoint, repo, revision, file)
	u, err := url.Parse(start)
	if err != nil {
		return nil, fmt.Errorf("invalid endpoint %q: %w", s.endpoint, err)
	}
	for hop := 0; ; hop++ {
		req, err := s.newRequest(ctx, http.MethodHead, u.String(), true)
		if err != nil {
			return nil, err
		}
		resp, err := s.http.Do(req)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()

		var loc *url.URL
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.Header.Get("Location") != "" {
			target, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				return nil, fmt.Errorf("HTTP %d from %s with an invalid Location: %w", resp.StatusCode, u.Redacted(), err)
			}
			loc = u.ResolveReference(target)
			if target.Host == "" && target.Scheme == "" {
				// A relative redirect (a renamed repository) is followed; one to another host (the
				// content host) is only recorded.
				if hop >= maxRedirects {
					return nil, fmt.Errorf("too many redirects from %s", start)
				}
				u = loc
				continue
			}
		} else if resp.StatusCode >= 400 {
			return nil, newStatusError(resp, s.token != "")
		}
		return s.metaFrom(resp, u, loc, repo, file)
	}
}

// metaFrom reads the metadata headers of the final HEAD response to reqURL; loc is the absolute
// redirect it carries, if any.
func (s *settings) metaFrom(resp *http.Response, reqURL, loc *url.URL, repo, file string) (*fileMeta, error) {
	start := reqURL.Redacted()
	h := resp.Header
	m := &fileMeta{commit: h.Get("X-Repo-Commit"), size: -1}
	if m.commit == "" {
		return nil, fmt.Errorf("the response from %s has no X-Repo-Commit header: is %s (HF_ENDPOINT) a Hugging Face hub, and are the proxy and firewall settings right?", start, s.endpoint)
	}
	if !safeComponent(m.commit) {
		return nil, fmt.Errorf("invalid X-Repo-Commit %q from %s", m.commit, start)
	}
	etag := h.Get("X-Linked-Etag")
	if etag == "" {
		etag = h.Get("ETag")
	}
	m.etag = normalizeETag(etag)
	if m.etag == "" {
		return nil, fmt.Errorf("the response from %s has no ETag: the file cannot be cached reliably", start)
	}
	if !safeComponent(m.etag) {
		return nil, fmt.Errorf("invalid ETag %q from %s", m.etag, start)
	}
	// A redirect's own Content-Length is the length of the redirect's body, not of the file: on a
	// redirect only X-Linked-Size counts (mirrors and proxies may drop it; the size is then unknown
	// until the download's response gives it), as in huggingface_hub.
	sizes := []string{h.Get("X-Linked-Size")}
	if loc == nil {
		sizes = append(sizes, h.Get("Content-Length"))
	}
	for _, v := range sizes {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n >= 0 {
			m.size = n
			break
		}
	}
	if m.size < 0 && resp.ContentLength >= 0 && loc == nil {
		m.size = resp.ContentLength
	}

	// Download from the content host the hub redirects to, without the token when it is another host
	// (the URL is signed). Other files are fetched from the hub at the commit just resolved, so that
	// the content matches the metadata even if the branch moves meanwhile. Xet-backed files are
	// fetched from the hub too, which redirects them to a plain-HTTP bridge; huggingface_hub does the
	// same when hf_xet is not installed.
	m.location, m.auth = resolveURL(s.endpoint, repo, m.commit, file), true
	if loc != nil && h.Get("X-Xet-Hash") == "" {
		m.location = loc.String()
		m.auth = loc.Host == reqURL.Host
	}
	return m, nil
}

// normalizeETag strips the weak-validator prefix and the quotes of an ETag header.
func normalizeETag(etag string) string {
	etag = strings.TrimSpace(etag)
	etag = strings.TrimPrefix(etag, "W/")
	return strings.Trim(etag, `"`)
}

// get starts the GET of a file's content from offset, following redirects (to the content host) and
// dropping the token whenever a redirect leads to another host.
func (s *settings) get(ctx context.Context, m *fileMeta, offset int64) (*http.Response, bool, error) {
	u, err := url.Parse(m.location)
	if err != nil {
		return nil, false, err
	}
	auth := m.auth
	for hop := 0; ; hop++ {
		req, err := s.newRequest(ctx, http.MethodGet, u.String(), auth)
		if err != nil {
			return nil, false, err
		}
		if offset > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
		}
		resp, err := s.http.Do(req)
		if err != nil {
			return nil, false, err
		}
		if resp.StatusCode < 300 || resp.StatusCode >= 400 || resp.Header.Get("Location") == "" {
			return resp, auth && s.token != "", nil
		}
		next, err := resp.Location()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if err != nil {
			return nil, false, fmt.Errorf("HTTP %d from %s with an invalid Location: %w", resp.StatusCode, u.Redacted(), err)
		}
		if hop >= maxRedirects {
			return nil, false, fmt.Errorf("too many redirects from %s", m.location)
		}
		if next.Host != u.Host {
			auth = false
		}
		u = next
	}
}

// transfer is the state of one file download into its .incomplete file.
type transfer struct {
	s     *settings
	meta  *fileMeta
	file  string    // repository path, for progress and messages
	f     *os.File  // the .incomplete file, positioned at its end
	sum   hash.Hash // SHA-256 of the bytes so far, when the ETag is one
	have  int64     // bytes in f
	total int64     // expected size, -1 if unknown
}

// fetch downloads a file's content into blob: into blob.incomplete first (resuming what an earlier
// attempt left there), verifying size and SHA-256, then renaming it into place. The caller holds the
// blob's lock. An interrupted download leaves only the .incomplete file; a failed verification leaves
// nothing.
func (s *settings) fetch(ctx context.Context, m *fileMeta, file, blob string) error {
	incomplete := blob + ".incomplete"
	f, err := os.OpenFile(incomplete, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return err
	}
	t := &transfer{s: s, meta: m, file: file, f: f, total: m.size}
	err = t.run(ctx)
	if err == nil {
		err = t.verify()
	}
	if errors.Is(err, ErrChecksum) { // what is there is wrong: do not resume from it
		f.Close()
		os.Remove(incomplete)
		return err
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(incomplete, blob); err != nil {
		return err
	}
	s.report(file, t.have, t.have)
	return nil
}

// run transfers the content, resuming after interruptions as allowed by the retry budget.
func (t *transfer) run(ctx context.Context) error {
	fi, err := t.f.Stat()
	if err != nil {
		return err
	}
	t.have = fi.Size()
	if t.total >= 0 && t.have > t.total {
		if err := t.reset(); err != nil {
			return err
		}
	}
	if isSHA256(t.meta.etag) {
		t.sum = sha256.New()
		if t.have > 0 {
			if _, err := io.Copy(t.sum, io.NewSectionReader(t.f, 0, t.have)); err != nil {
				return err
			}
		}
	}
	if _, err := t.f.Seek(t.have, io.SeekStart); err != nil {
		return err
	}
	t.s.report(t.file, t.have, t.total)

	failures := 0
	for t.total < 0 || t.have < t.total {
		before := t.have
		err := t.attempt(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var re retryableError
		if !errors.As(err, &re) {
			return err
		}
		if t.have > before {
			failures = 0
		}
		if failures >= t.s.retries {
			return fmt.Errorf("%w (gave up after %d retries; run again to resume from byte %d)", err, failures, t.have)
		}
		failures++
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(failures) * retryDelay):
		}
	}
	return nil
}

// reset empties the .incomplete file to restart from the first byte.
func (t *transfer) reset() error {
	if err := t.f.Truncate(0); err != nil {
		return err
	}
	if _, err := t.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	t.have = 0
	if t.sum != nil {
		t.sum.Reset()
	}
	return nil
}

// attempt makes one GET from the current offset and appends what arrives. It returns nil once the
// whole content is there, and a retryableError when resuming may help.
func (t *transfer) attempt(ctx context.Context) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(t.s.stallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()

	resp, tokenSent, err := t.s.get(actx, t.meta, t.have)
	if err != nil {
		return retryableError{t.cause(actx, err)}
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusPartialContent && t.have > 0:
		start, size, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != t.have {
			from := t.have
			if err := t.reset(); err != nil {
				return err
			}
			return retryableError{fmt.Errorf("the server answered the range request from byte %d with Content-Range %q: restarting", from, resp.Header.Get("Content-Range"))}
		}
		if err := t.checkSize(size); err != nil {
			return err
		}
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
		if t.have > 0 { // the server ignored the Range header: start over
			if err := t.reset(); err != nil {
				return err
			}
			t.s.report(t.file, 0, t.total)
		}
		if err := t.checkSize(resp.ContentLength); err != nil {
			return err
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && t.have > 0:
		from := t.have
		if err := t.reset(); err != nil {
			return err
		}
		return retryableError{fmt.Errorf("HTTP 416 for the range from byte %d: restarting", from)}
	default:
		se := newStatusError(resp, tokenSent)
		if se.temporary() {
			return retryableError{se}
		}
		return se
	}

	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(t.s.stallTimeout)
			if t.total >= 0 && t.have+int64(n) > t.total {
				return fmt.Errorf("the server sent more than the %d bytes announced: %w", t.total, ErrChecksum)
			}
			if _, err := t.f.Write(buf[:n]); err != nil {
				return err
			}
			if t.sum != nil {
				t.sum.Write(buf[:n])
			}
			t.have += int64(n)
			t.s.report(t.file, t.have, t.total)
		}
		if rerr == io.EOF {
			if t.total >= 0 && t.have < t.total {
				return retryableError{fmt.Errorf("connection closed at byte %d of %d", t.have, t.total)}
			}
			return nil
		}
		if rerr != nil {
			return retryableError{fmt.Errorf("reading at byte %d: %w", t.have, t.cause(actx, rerr))}
		}
	}
}

// checkSize compares the file size given by a response (-1: not given) with the expected one, which it
// sets when it was unknown.
func (t *transfer) checkSize(size int64) error {
	switch {
	case size < 0:
	case t.total < 0:
		t.total = size
	case size != t.total:
		return fmt.Errorf("the server sends a file of %d bytes, the hub announced %d: %w", size, t.total, ErrChecksum)
	}
	return nil
}

// cause explains an error of a request made with actx, naming a stall rather than a bare cancellation.
func (t *transfer) cause(actx context.Context, err error) error {
	if errors.Is(context.Cause(actx), errStalled) {
		return fmt.Errorf("no data for %v: %w", t.s.stallTimeout, errStalled)
	}
	return err
}

// verify checks the downloaded size and, for LFS files, the SHA-256 against the ETag.
func (t *transfer) verify() error {
	if t.meta.size >= 0 && t.have != t.meta.size {
		return fmt.Errorf("got %d bytes, the hub announced %d: %w", t.have, t.meta.size, ErrChecksum)
	}
	if t.sum != nil {
		if got := hex.EncodeToString(t.sum.Sum(nil)); got != t.meta.etag {
			return fmt.Errorf("SHA-256 is %s, the hub announced %s: %w", got, t.meta.etag, ErrChecksum)
		}
	}
	return nil
}

// report calls the progress callback, if any.
func (s *settings) report(file string, done, total int64) {
	if s.progress != nil {
		s.progress(file, done, total)
	}
}

// parseContentRange parses "bytes START-END/SIZE" (SIZE may be "*", giving -1).
func parseContentRange(v string) (start, size int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, total, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	first, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	size = -1
	if total = strings.TrimSpace(total); total != "*" {
		if size, err = strconv.ParseInt(total, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, size, true
}
