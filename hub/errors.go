package hub

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinel errors. Every error returned by this package that falls in one of these classes wraps the
// sentinel (test with errors.Is) and names the repository, revision and file involved.
var (
	// ErrNotFound: the repository, revision or file does not exist on the hub (HTTP 404), or the cache
	// records that the file does not exist at that commit (a .no_exist marker).
	ErrNotFound = errors.New("not found on the hub")

	// ErrUnauthorized: the hub refused access (HTTP 401 or 403). The repository may be private or
	// gated, or not exist at all (the hub answers 401 to anonymous requests for missing repositories):
	// set HF_TOKEN, or log in with `hf auth login` (older huggingface_hub: `huggingface-cli login`), with a token that has access.
	ErrUnauthorized = errors.New("access refused by the hub")

	// ErrOffline: offline mode is on (HF_HUB_OFFLINE=1 or [Client.Offline]) and the file is not in the
	// cache. Such errors also wrap [ErrNotCached].
	ErrOffline = errors.New("offline mode is on")

	// ErrNotCached: the file is not in the local cache ([Client.ResolveCached], offline mode).
	ErrNotCached = errors.New("not in the local cache")

	// ErrChecksum: a downloaded file does not have the size announced by the hub, or its SHA-256 does
	// not match the hub's ETag (LFS files). Nothing that looks complete is left in the cache.
	ErrChecksum = errors.New("downloaded file failed verification")
)

// statusError is an unexpected HTTP status from the hub or the content host.
type statusError struct {
	status int
	code   string // X-Error-Code header: RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo...
	commit string // X-Repo-Commit header, if any (present on EntryNotFound)
	msg    string // X-Error-Message header, if any
	url    string
	token  bool  // whether a token was sent
	kind   error // the sentinel, or nil
}

func (e *statusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d %s from %s", e.status, http.StatusText(e.status), e.url)
	if e.msg != "" {
		fmt.Fprintf(&b, " (%s)", e.msg)
	}
	switch {
	case e.code == "GatedRepo":
		b.WriteString(": the repository is gated; accept its conditions on its hub page and set HF_TOKEN to a token of that account")
	case e.code == "RevisionNotFound":
		b.WriteString(": no such revision")
	case e.code == "EntryNotFound" || (e.status == http.StatusNotFound && e.code == ""):
		b.WriteString(": no such file at this revision")
	case e.status == http.StatusUnauthorized && !e.token:
		b.WriteString(": the repository does not exist, or it is private or gated and needs a token; set HF_TOKEN or run `hf auth login`")
	case e.status == http.StatusUnauthorized:
		b.WriteString(": the repository does not exist, or the token in use (HF_TOKEN or the saved login) is invalid or has no access to it")
	case e.status == http.StatusForbidden:
		b.WriteString(": the token in use has no access to this repository; check its permissions, or accept the repository's conditions on its hub page")
	case e.code == "RepoNotFound":
		b.WriteString(": no such repository (or it is private and the token has no access)")
	}
	if e.kind != nil {
		fmt.Fprintf(&b, ": %v", e.kind)
	}
	return b.String()
}

func (e *statusError) Unwrap() error { return e.kind }

// definitive reports whether the error settles that the file does not exist at that revision (so the
// cache must not be used instead): a 404 for a missing file or revision, as opposed to a missing (or
// hidden) repository, an access problem or a server failure.
func (e *statusError) definitive() bool {
	return e.status == http.StatusNotFound && e.code != "RepoNotFound"
}

// temporary reports whether retrying the same request may succeed.
func (e *statusError) temporary() bool {
	return e.status == http.StatusTooManyRequests || e.status >= 500
}

// newStatusError classifies a non-success response.
func newStatusError(resp *http.Response, tokenSent bool) *statusError {
	e := &statusError{
		status: resp.StatusCode,
		code:   resp.Header.Get("X-Error-Code"),
		commit: resp.Header.Get("X-Repo-Commit"),
		msg:    resp.Header.Get("X-Error-Message"),
		token:  tokenSent,
	}
	if resp.Request != nil && resp.Request.URL != nil {
		u := *resp.Request.URL
		u.RawQuery = "" // signed CDN URLs carry credentials in the query
		e.url = u.String()
	}
	switch {
	case e.status == http.StatusUnauthorized || e.status == http.StatusForbidden || e.code == "GatedRepo":
		e.kind = ErrUnauthorized
	case e.status == http.StatusNotFound:
		e.kind = ErrNotFound
	}
	return e
}

// retryableError marks a transfer failure after which resuming the download may succeed.
type retryableError struct{ err error }

func (e retryableError) Error() string { return e.err.Error() }
func (e retryableError) Unwrap() error { return e.err }
