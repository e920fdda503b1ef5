package hub

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the hub used when neither [Client.Endpoint] nor HF_ENDPOINT says otherwise.
const DefaultEndpoint = "https://huggingface.co"

// DefaultRevision is the revision fetched when none is given, as in huggingface_hub.
const DefaultRevision = "main"

// defaultTimeout is huggingface_hub's default for both the metadata (HEAD) request and the download
// read timeout (DEFAULT_ETAG_TIMEOUT, DEFAULT_DOWNLOAD_TIMEOUT).
const defaultTimeout = 10 * time.Second

// environment is the part of the process environment that huggingface_hub reads, resolved the same way.
type environment struct {
	home            string // HF_HOME
	hubCache        string // HF_HUB_CACHE
	tokenPath       string // HF_TOKEN_PATH
	endpoint        string // HF_ENDPOINT, no trailing slash
	token           string // HF_TOKEN, HUGGING_FACE_HUB_TOKEN or the token file; "" when none
	offline         bool   // HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE
	metadataTimeout time.Duration
	stallTimeout    time.Duration
}

// readEnv resolves the environment like huggingface_hub's constants module:
//
//	HF_HOME      = $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface
//	HF_HUB_CACHE = $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE (legacy), else $HF_HOME/hub
//	token path   = $HF_TOKEN_PATH, else $HF_HOME/token
//	token        = $HF_TOKEN, else $HUGGING_FACE_HUB_TOKEN (legacy), else the token file's content;
//	               none at all when HF_HUB_DISABLE_IMPLICIT_TOKEN is true
//
// Paths get "~" and $VAR expanded as Python's expanduser/expandvars do. An empty variable counts as
// unset. readFile is used for the token file (nil means os.ReadFile).
func readEnv(getenv func(string) string, home func() (string, error), readFile func(string) ([]byte, error)) environment {
	if readFile == nil {
		readFile = os.ReadFile
	}
	expand := func(p string) string { return expandPath(p, getenv, home) }

	var e environment
	if v := getenv("HF_HOME"); v != "" {
		e.home = expand(v)
	} else {
		base := getenv("XDG_CACHE_HOME")
		if base == "" {
			base = filepath.Join("~", ".cache")
		}
		e.home = expand(filepath.Join(base, "huggingface"))
	}

	switch {
	case getenv("HF_HUB_CACHE") != "":
		e.hubCache = expand(getenv("HF_HUB_CACHE"))
	case getenv("HUGGINGFACE_HUB_CACHE") != "":
		e.hubCache = expand(getenv("HUGGINGFACE_HUB_CACHE"))
	default:
		e.hubCache = filepath.Join(e.home, "hub")
	}

	if v := getenv("HF_TOKEN_PATH"); v != "" {
		e.tokenPath = expand(v)
	} else {
		e.tokenPath = filepath.Join(e.home, "token")
	}

	e.endpoint = strings.TrimRight(getenv("HF_ENDPOINT"), "/")
	if e.endpoint == "" {
		e.endpoint = DefaultEndpoint
	}

	if !isTrue(getenv("HF_HUB_DISABLE_IMPLICIT_TOKEN")) {
		e.token = cleanToken(getenv("HF_TOKEN"))
		if e.token == "" {
			e.token = cleanToken(getenv("HUGGING_FACE_HUB_TOKEN"))
		}
		if e.token == "" {
			if b, err := readFile(e.tokenPath); err == nil {
				e.token = cleanToken(string(b))
			}
		}
	}

	e.offline = isTrue(getenv("HF_HUB_OFFLINE")) || isTrue(getenv("TRANSFORMERS_OFFLINE"))
	e.metadataTimeout = secondsOr(getenv("HF_HUB_ETAG_TIMEOUT"), defaultTimeout)
	e.stallTimeout = secondsOr(getenv("HF_HUB_DOWNLOAD_TIMEOUT"), defaultTimeout)
	return e
}

// isTrue reports whether an environment value is one of huggingface_hub's true values
// (1, ON, YES, TRUE, any case).
func isTrue(v string) bool {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// cleanToken drops line breaks and surrounding blanks, as huggingface_hub does with tokens.
func cleanToken(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\n", "")
	return strings.TrimSpace(s)
}

// secondsOr parses a whole number of seconds, or returns def when v is empty, invalid or not positive.
func secondsOr(v string, def time.Duration) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return def
	}
	return time.Duration(n) * time.Second
}

// expandPath expands a leading "~" to the home directory, then $VAR / ${VAR} references (Python's
// expanduser, then expandvars). As with expandvars, a reference to an unset variable is left as written.
func expandPath(p string, getenv func(string) string, home func() (string, error)) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h, err := home(); err == nil && h != "" {
			p = h + p[1:]
		}
	}
	p = os.Expand(p, func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return "${" + name + "}"
	})
	return filepath.Clean(p)
}
