package gotchutil

/*
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

// gu_malloc_tune sets glibc's mmap and trim thresholds; 1 when both were set, 0 otherwise (not glibc,
// or a value glibc refuses).
static int gu_malloc_tune(size_t mmap_threshold, size_t trim_threshold) {
#if defined(__GLIBC__)
	return mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold) == 1 && mallopt(M_TRIM_THRESHOLD, (int)trim_threshold) == 1;
#else
	return 0;
#endif
}

static int gu_glibc(void) {
#if defined(__GLIBC__)
	return 1;
#else
	return 0;
#endif
}
*/
import "C"

import (
	"os"
	"sync"
)

// MallocTuneEnv is the environment variable that turns off [TuneMalloc]: SAFETY_MALLOC_TUNE=0.
const MallocTuneEnv = "SAFETY_MALLOC_TUNE"

// Thresholds TuneMalloc sets: an activation of up to 256 MiB comes from glibc's heap rather than its
// own mapping, and up to 1 GiB of freed heap stays with the process between forward passes.
const (
	mallocMmapThreshold = 256 << 20
	mallocTrimThreshold = 1 << 30
)

// glibcBuild reports whether this binary's C library is glibc.
var glibcBuild = C.gu_glibc() == 1

var (
	mallocOnce  sync.Once
	mallocTuned bool
)

// TuneMalloc keeps the memory of a forward pass's activations with the process between passes, once per
// process, and reports whether it did. libtorch's CPU tensors come from glibc's malloc; with glibc's
// defaults, the large activations of a forward pass (tens of MB each at batch 8) are mapped and unmapped
// one by one, or trimmed from the heap's top when freed, so every pass faults them in again and has the
// kernel zero them: about a million page faults for four batch-8 passes of ViT-L/14 with the weights
// mapped from the checkpoint, 10–15% of the batch-8 forward time on this project's development machine
// (docs/zero-copy.md). TuneMalloc raises glibc's mmap threshold to 256 MiB and its trim threshold to 1 GiB
// (mallopt), which removes those faults. The cost is that the process keeps its peak heap (about 60 MB
// more peak RSS at batch 8 was measured) instead of returning it to the kernel after each pass.
//
// The setting is process-wide. It is skipped (false) when SAFETY_MALLOC_TUNE=0, when the environment
// already sets glibc's own MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES (the
// operator's choice wins), and on a C library other than glibc.
func TuneMalloc() bool {
	mallocOnce.Do(func() {
		if mallocTuneWanted(os.LookupEnv) {
			mallocTuned = C.gu_malloc_tune(mallocMmapThreshold, mallocTrimThreshold) == 1
		}
	})
	return mallocTuned
}

// mallocTuneWanted reports whether the environment (looked up by lookup) leaves the allocator to
// TuneMalloc.
func mallocTuneWanted(lookup func(string) (string, bool)) bool {
	if v, _ := lookup(MallocTuneEnv); v == "0" {
		return false
	}
	for _, name := range []string{"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"} {
		if _, set := lookup(name); set {
			return false
		}
	}
	return true
}
