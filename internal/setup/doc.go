// Package setup provisions libtorch and builds the configured copy of gotch that this module links
// against; cmd/safety-setup is its command-line front end, and `make setup` uses the same command.
//
// # The model
//
// An application (or this repository) builds with cgo against three things, all kept in one per-user
// cache shared by every application of the user (SAFETY_CACHE_DIR, default os.UserCacheDir()/sdsafety):
//
//	<cache>/wheels/                          downloaded wheels, each checked against its pinned sha256 (PinnedWheels) or the index's
//	<cache>/libtorch-<version>/              lib/ and include/ unpacked from PyPI's torch wheel
//	<cache>/gotch/<gotch>_libtorch-<v>_abi<0|1>_<cpu|cuda>_<hash>/
//	                                         the configured gotch module: its Go packages, the compiled
//	                                         C++ wrapper libtch/libgotchwrap.so, BUILD_INFO.json
//	<cache>/build/<same name>/               compiled objects, reused by content
//
// The application's go.work (or, on request, its go.mod) replaces github.com/sugarme/gotch with the
// configured copy; the Go module cache is never modified.
//
// # The configured gotch
//
// Upstream gotch compiles its whole C++ wrapper inside cgo and links a fixed CUDA set. The configured
// copy differs in four ways, each with its reason:
//   - the wrapper is compiled here, split into translation units built in parallel, into a shared
//     library; objects are cached by the hash of their source and flags, so a second run compiles nothing;
//   - version-adaptive: a generated wrapper that does not compile against the given libtorch (other
//     versions rename or drop ops) is replaced by a stub that sets gotch's last error to "gotch: op NAME
//     is not available in libtorch VERSION"; the list is compiled into the library
//     (gotchsafety_build_info, read by internal/gotchutil);
//   - every generated Go wrapper frees the output-handle block it used to leak, and the block has room
//     for the outputs of multi-output ops (upstream overruns it);
//   - libtch/lib.go carries this libtorch's link flags (CPU: torch_cpu and c10; with CUDA also
//     torch_cuda and c10_cuda under --no-as-needed) and run paths: $ORIGIN/lib first (a bundle made by
//     Bundle), then the cache's absolute paths. The C++ ABI (_GLIBCXX_USE_CXX11_ABI) and language
//     standard are read from the libtorch given.
//
// Concurrency: Configure and ProvisionLibtorch take an exclusive lock on the cache, so concurrent runs
// (two applications set up at once) wait for each other instead of racing.
package setup
