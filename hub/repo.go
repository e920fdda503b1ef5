package hub

import (
	"fmt"
	"os"
	"path"
	"strings"
)

// IsRepoID reports whether s names a hub model repository ("org/name") rather than a local path.
//
// Anything that exists on disk is a local path. Otherwise s must be exactly two parts separated by one
// "/", each of 1 to 96 letters, digits, '_', '-' or '.', beginning and ending with a letter, digit or
// '_', and s must not contain "--" or ".." (the hub's own rules for repository ids). So "./model",
// "/abs/dir", "dir/" and "a/b/c" are not repository ids.
func IsRepoID(s string) bool {
	if s == "" {
		return false
	}
	if _, err := os.Lstat(s); err == nil {
		return false
	}
	org, name, ok := strings.Cut(s, "/")
	return ok && validRepoID(s) && org != "" && name != ""
}

// validRepoID reports whether repo is a syntactically valid repository id: "name" (legacy, unprefixed)
// or "org/name".
func validRepoID(repo string) bool {
	if strings.Contains(repo, "--") || strings.Contains(repo, "..") {
		return false
	}
	parts := strings.Split(repo, "/")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if !validRepoPart(p) {
			return false
		}
	}
	return true
}

func validRepoPart(p string) bool {
	if len(p) == 0 || len(p) > 96 {
		return false
	}
	word := func(c byte) bool {
		return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !word(c) && c != '-' && c != '.' {
			return false
		}
	}
	return word(p[0]) && word(p[len(p)-1])
}

// repoFolderName is the cache folder of a model repository: "models--org--name".
func repoFolderName(repo string) string {
	return "models--" + strings.ReplaceAll(repo, "/", "--")
}

// checkRelPath validates a repository-relative slash-separated path (a file name or a revision):
// not empty, not absolute, no empty, "." or ".." segment and no backslash or NUL, so that it can never
// name anything outside the folder it is joined to.
func checkRelPath(what, p string) error {
	if p == "" {
		return fmt.Errorf("hub: empty %s", what)
	}
	if strings.ContainsAny(p, "\\\x00") || strings.HasPrefix(p, "/") {
		return fmt.Errorf("hub: invalid %s %q", what, p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("hub: invalid %s %q", what, p)
		}
	}
	return nil
}

// checkArgs validates the repository and revision of a request and, when given, file paths.
func checkArgs(repo, revision string, files ...string) error {
	if !validRepoID(repo) {
		return fmt.Errorf("hub: invalid repository id %q (want \"org/name\")", repo)
	}
	if err := checkRelPath("revision", revision); err != nil {
		return err
	}
	for _, f := range files {
		if err := checkRelPath("file path", f); err != nil {
			return err
		}
	}
	return nil
}

// joinRepoPath joins a subfolder and a file name into a repository path.
func joinRepoPath(subfolder, name string) string {
	subfolder = strings.Trim(subfolder, "/")
	if subfolder == "" {
		return name
	}
	return path.Join(subfolder, name)
}

// isCommitHash reports whether a revision is a full commit hash (40 lowercase hex digits), which
// huggingface_hub treats as immutable.
func isCommitHash(s string) bool { return isLowerHex(s, 40) }

// isSHA256 reports whether an ETag is a SHA-256 (64 lowercase hex digits): the hub's ETag for LFS files.
func isSHA256(s string) bool { return isLowerHex(s, 64) }

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// resolveURL is the hub URL of a file: {endpoint}/{repo}/resolve/{revision}/{path}, with the revision
// escaped as one segment (so refs/pr/1 becomes refs%2Fpr%2F1) and the path escaped segment by segment,
// the way huggingface_hub's hf_hub_url quotes them.
func resolveURL(endpoint, repo, revision, file string) string {
	return endpoint + "/" + repo + "/resolve/" + quote(revision, "") + "/" + quote(file, "/")
}

// quote percent-encodes every byte except letters, digits, "_.-~" and those in safe, like Python's
// urllib.parse.quote.
func quote(s, safe string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("_.-~", c) >= 0 || strings.IndexByte(safe, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

// safeComponent reports whether a value received from the server (commit hash, ETag) can be used as a
// single file name in the cache.
func safeComponent(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= 255 && !strings.ContainsAny(s, "/\\\x00")
}
