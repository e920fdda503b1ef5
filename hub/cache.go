package hub

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// repoCache is the cache folder of one model repository, laid out as huggingface_hub does:
//
//	{cache}/models--{org}--{name}/blobs/{etag}                 file contents
//	{cache}/models--{org}--{name}/refs/{revision}              commit hash of a branch or tag
//	{cache}/models--{org}--{name}/snapshots/{commit}/{path}    relative symlink to ../../blobs/{etag}
//	{cache}/models--{org}--{name}/.no_exist/{commit}/{path}    empty marker: file absent at commit
//	{cache}/.locks/models--{org}--{name}/{etag}.lock           download lock
type repoCache struct {
	cacheDir string // the hub cache (HF_HUB_CACHE)
	folder   string // models--{org}--{name}
}

func newRepoCache(cacheDir, repo string) repoCache {
	return repoCache{cacheDir: cacheDir, folder: repoFolderName(repo)}
}

func (rc repoCache) dir() string { return filepath.Join(rc.cacheDir, rc.folder) }

func (rc repoCache) blobPath(etag string) string { return filepath.Join(rc.dir(), "blobs", etag) }

func (rc repoCache) snapshotDir(commit string) string {
	return filepath.Join(rc.dir(), "snapshots", commit)
}

func (rc repoCache) pointerPath(commit, file string) string {
	return filepath.Join(rc.snapshotDir(commit), filepath.FromSlash(file))
}

func (rc repoCache) refPath(revision string) string {
	return filepath.Join(rc.dir(), "refs", filepath.FromSlash(revision))
}

func (rc repoCache) noExistPath(commit, file string) string {
	return filepath.Join(rc.dir(), ".no_exist", commit, filepath.FromSlash(file))
}

func (rc repoCache) lockPath(etag string) string {
	return filepath.Join(rc.cacheDir, ".locks", rc.folder, etag+".lock")
}

// commitFor maps a revision to the commit whose snapshot holds it: the content of refs/{revision} when
// that file exists, else the revision itself (a commit hash), as huggingface_hub's try_to_load_from_cache.
func (rc repoCache) commitFor(revision string) string {
	if b, err := os.ReadFile(rc.refPath(revision)); err == nil {
		if c := strings.TrimSpace(string(b)); safeComponent(c) {
			return c
		}
	}
	return revision
}

// lookup finds a file of a revision in the cache without any network access. It returns the snapshot
// path and the commit, an error wrapping [ErrNotFound] when a .no_exist marker records that the file
// does not exist at that commit, or one wrapping [ErrNotCached].
func (rc repoCache) lookup(revision, file string) (string, string, error) {
	commit := rc.commitFor(revision)
	if !safeComponent(commit) {
		return "", "", ErrNotCached
	}
	if isRegular(rc.noExistPath(commit, file)) {
		return "", commit, fmt.Errorf("the cache records that it does not exist at commit %s: %w", commit, ErrNotFound)
	}
	p := rc.pointerPath(commit, file)
	if isRegular(p) {
		return p, commit, nil
	}
	return "", commit, ErrNotCached
}

// writeRef records that revision points at commit (refs/{revision}), unless revision is that commit.
// The file is replaced atomically and only rewritten when it changes, so a read-only cache that is up
// to date is not an error.
func (rc repoCache) writeRef(revision, commit string) error {
	if revision == commit {
		return nil
	}
	p := rc.refPath(revision)
	if b, err := os.ReadFile(p); err == nil && string(b) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
		return err
	}
	return writeFileAtomic(p, []byte(commit))
}

// markMissing writes the .no_exist marker of a file known to be absent at commit. It is best effort,
// as in huggingface_hub: the marker is only an optimisation.
func (rc repoCache) markMissing(commit, file string) {
	if !safeComponent(commit) {
		return
	}
	p := rc.noExistPath(commit, file)
	if os.MkdirAll(filepath.Dir(p), 0o777) != nil {
		return
	}
	if f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o666); err == nil {
		f.Close()
	}
}

// link points snapshots/{commit}/{file} at blobs/{etag} with a relative symlink (../../blobs/{etag},
// one more ../ per subfolder level), replacing whatever was there atomically.
func (rc repoCache) link(commit, file, etag string) (string, error) {
	pointer := rc.pointerPath(commit, file)
	if err := os.MkdirAll(filepath.Dir(pointer), 0o777); err != nil {
		return "", err
	}
	target, err := filepath.Rel(filepath.Dir(pointer), rc.blobPath(etag))
	if err != nil {
		return "", err
	}
	if cur, err := os.Readlink(pointer); err == nil && cur == target {
		return pointer, nil
	}
	tmp := tempName(pointer)
	if err := os.Symlink(target, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, pointer); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return pointer, nil
}

// isRegular reports whether p (following symlinks) is a regular file.
func isRegular(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// writeFileAtomic writes data to a temporary file next to p and renames it over p.
func writeFileAtomic(p string, data []byte) error {
	tmp := tempName(p)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, p)
	}
	if werr != nil {
		os.Remove(tmp)
	}
	return werr
}

// tempSeq makes temporary names unique within the process; the process id and the clock make them
// unique across processes.
var tempSeq atomic.Uint64

// tempName is a unique sibling name for p, for write-then-rename.
func tempName(p string) string {
	return p + ".tmp-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) +
		"-" + strconv.FormatUint(tempSeq.Add(1), 36)
}
