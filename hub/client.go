package hub

import (
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"
)

// Client fetches files from a Hugging Face hub into the shared cache and resolves cached ones.
//
// The zero value works: empty Endpoint and CacheDir are taken from the environment as [NewClient]
// does (HF_ENDPOINT, HF_HUB_CACHE, ...), other zero fields mean their documented default. Note that
// Token and Offline are not read from the environment when left zero: use NewClient for that. A nil
// *Client behaves like NewClient().
//
// A Client is safe for concurrent use by several goroutines as long as its fields are not changed
// after first use; downloads of the same file, from goroutines or from other processes (including
// Python's huggingface_hub), are serialised by a lock file and never corrupt the cache.
type Client struct {
	// Endpoint is the hub's base URL, without trailing slash (default: HF_ENDPOINT, else
	// https://huggingface.co).
	Endpoint string

	// Token is sent as "Authorization: Bearer <Token>" to the hub (never to a content host on another
	// host). Empty means anonymous.
	Token string

	// CacheDir is the hub cache directory (default: HF_HUB_CACHE, else $HF_HOME/hub, else
	// ~/.cache/huggingface/hub).
	CacheDir string

	// Offline disables all network access: files are only looked up in the cache.
	Offline bool

	// HTTP is the HTTP client (default: a client with http.DefaultTransport). Its CheckRedirect is not
	// used: redirects are followed by this package, which decides where the token may go.
	HTTP *http.Client

	// Progress, if set, is called as a file's content is downloaded, with the file's repository path,
	// the bytes present so far (including any resumed part) and the total size (-1 if unknown). The
	// last call of a successful download has done == total. It is called from the goroutine running
	// the download; give the same Client concurrent downloads only with a callback that is safe for
	// concurrent use (like [TextProgress.Update]).
	Progress func(file string, done, total int64)

	// Retries is how many times an interrupted download is resumed before giving up (0 means 5;
	// negative means never). The count restarts whenever data arrives.
	Retries int

	// MetadataTimeout bounds each metadata (HEAD) request (0 means HF_HUB_ETAG_TIMEOUT, else 10s).
	MetadataTimeout time.Duration

	// StallTimeout aborts, and then resumes, a download that receives no data for that long (0 means
	// HF_HUB_DOWNLOAD_TIMEOUT, else 10s).
	StallTimeout time.Duration
}

// NewClient returns a Client configured from the environment like huggingface_hub: HF_ENDPOINT,
// HF_HUB_CACHE / HUGGINGFACE_HUB_CACHE / HF_HOME / XDG_CACHE_HOME, HF_TOKEN / HUGGING_FACE_HUB_TOKEN /
// the token file ($HF_TOKEN_PATH, else $HF_HOME/token, as written by `hf auth login`, or `huggingface-cli login` before huggingface_hub 1.0),
// HF_HUB_DISABLE_IMPLICIT_TOKEN, HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, HF_HUB_ETAG_TIMEOUT and
// HF_HUB_DOWNLOAD_TIMEOUT.
func NewClient() *Client {
	e := readEnv(os.Getenv, os.UserHomeDir, nil)
	return &Client{
		Endpoint:        e.endpoint,
		Token:           e.token,
		CacheDir:        e.hubCache,
		Offline:         e.offline,
		MetadataTimeout: e.metadataTimeout,
		StallTimeout:    e.stallTimeout,
	}
}

// defaultHTTP is used when Client.HTTP is nil.
var defaultHTTP = &http.Client{Transport: http.DefaultTransport}

// userAgent identifies this package to the hub.
var userAgent = "sdsafety-hub/1 (go; " + runtime.Version() + ")"

// settings is a Client with every default filled in, fixed for the duration of one call.
type settings struct {
	endpoint     string
	token        string
	cacheDir     string
	offline      bool
	http         *http.Client // never follows redirects
	progress     func(file string, done, total int64)
	retries      int
	metaTimeout  time.Duration
	stallTimeout time.Duration
}

// settings resolves the defaults of c (a nil c is NewClient()).
func (c *Client) settings() *settings {
	if c == nil {
		c = NewClient()
	}
	s := &settings{
		endpoint:     strings.TrimRight(c.Endpoint, "/"),
		token:        c.Token,
		cacheDir:     c.CacheDir,
		offline:      c.Offline,
		progress:     c.Progress,
		retries:      c.Retries,
		metaTimeout:  c.MetadataTimeout,
		stallTimeout: c.StallTimeout,
	}
	if s.endpoint == "" || s.cacheDir == "" || s.metaTimeout <= 0 || s.stallTimeout <= 0 {
		e := readEnv(os.Getenv, os.UserHomeDir, func(string) ([]byte, error) { return nil, os.ErrNotExist })
		if s.endpoint == "" {
			s.endpoint = e.endpoint
		}
		if s.cacheDir == "" {
			s.cacheDir = e.hubCache
		}
		if s.metaTimeout <= 0 {
			s.metaTimeout = e.metadataTimeout
		}
		if s.stallTimeout <= 0 {
			s.stallTimeout = e.stallTimeout
		}
	}
	switch {
	case s.retries == 0:
		s.retries = 5
	case s.retries < 0:
		s.retries = 0
	}
	base := c.HTTP
	if base == nil {
		base = defaultHTTP
	}
	hc := *base
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	s.http = &hc
	return s
}
