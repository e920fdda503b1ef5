// Package hub fetches models from the Hugging Face hub into the same local cache that Python's
// huggingface_hub (and so diffusers and transformers) uses, and finds models already there, with the
// standard library only.
//
// # Cache layout
//
// The cache is shared with Python: a model downloaded by either side is found by the other without
// network access. Each model repository has one folder:
//
//	{cache}/models--{org}--{name}/
//	    blobs/{etag}                     file contents, named by ETag: the SHA-256 for LFS files,
//	                                     the git blob hash for the others
//	    blobs/{etag}.incomplete          a download in progress or interrupted (resumed later)
//	                                     (see "Differences" below)
//	    refs/{revision}                  the commit hash a branch or tag (or refs/pr/N) resolved to
//	    snapshots/{commit}/{path}        a relative symlink to ../../blobs/{etag} (one more ../ per
//	                                     subfolder level), for each file fetched at that commit
//	    .no_exist/{commit}/{path}        empty marker: the file does not exist at that commit
//	{cache}/.locks/models--{org}--{name}/{etag}.lock    lock held while the blob is downloaded
//
// [Client.Download] returns snapshot paths. A revision "main" is found through refs/main; a revision
// that is a full commit hash names its snapshot directly and, once cached, needs no request at all.
//
// # Protocol
//
// As huggingface_hub's hf_hub_download, a file is fetched with a HEAD request to
// {endpoint}/{repo}/resolve/{revision}/{path}, which gives the commit (X-Repo-Commit), the ETag
// (X-Linked-Etag for LFS files, else ETag) and the size (X-Linked-Size, else, when the answer is not a
// redirect, Content-Length: a redirect's Content-Length is its own body's).
// Relative redirects (a renamed repository) are followed; a redirect to a content host (CDN) is not,
// its target is then fetched with GET, without the token when it is another host. The content goes to
// blobs/{etag}.incomplete, resuming a partial file with a Range request; the size and, for LFS files,
// the SHA-256 are verified before the file is renamed to its blob. Interrupted transfers are resumed
// automatically a few times ([Client.Retries]).
//
// # Environment
//
// [NewClient] reads the variables huggingface_hub reads: HF_HUB_CACHE (or the legacy
// HUGGINGFACE_HUB_CACHE), else $HF_HOME/hub, HF_HOME defaulting to $XDG_CACHE_HOME/huggingface, else
// ~/.cache/huggingface; HF_ENDPOINT (default https://huggingface.co); HF_TOKEN (or the legacy
// HUGGING_FACE_HUB_TOKEN), else the token file saved by `hf auth login` (`huggingface-cli login` in
// older huggingface_hub) at $HF_TOKEN_PATH, else $HF_HOME/token; none if HF_HUB_DISABLE_IMPLICIT_TOKEN is set; HF_HUB_OFFLINE=1 (or
// TRANSFORMERS_OFFLINE=1) to use the cache only; HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT in
// seconds.
//
// # Errors
//
// Errors name the repository, revision and file, and wrap [ErrNotFound], [ErrUnauthorized],
// [ErrOffline], [ErrNotCached] or [ErrChecksum] where they apply. Nothing in this package panics.
//
// # Concurrency
//
// A [Client] may be used by several goroutines at once. Downloads of the same blob, by goroutines of
// this process or by other processes (Go or Python), take an exclusive flock(2) on the blob's lock
// file, so one downloads while the others wait and then reuse the result. Blobs, refs and snapshot
// links are all written under a temporary name and renamed into place, so a reader never sees a
// partial file under a final name.
//
// # Differences from huggingface_hub
//
// The files a download leaves in the cache differ in three ways, none of which affects the other side
// reading the cache: a partial download is named blobs/{etag}.incomplete, where huggingface_hub 2.x
// names it blobs/{etag}.{uuid}.incomplete, so neither resumes the other's partial file (each starts its
// own; the finished blob is the same); this package writes no CACHEDIR.TAG file at the cache root
// (huggingface_hub writes one so that backup tools skip the cache); and Xet-backed files are fetched
// through the hub's plain-HTTP bridge, as huggingface_hub does without hf_xet installed.
//
// [FetchModel] gets a safety checker model (config, weights, image processor config) in one call, and
// [TextProgress] with [IsTerminal] give a command-line progress bar.
package hub
