package gotchutil

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static int gu_mkl_force = -1;            // -1: SAFETY_MKL_INTEL_PATH not read yet; 0 or 1
static int (*gu_mkl_real)(void) = NULL;  // MKL's own check (libtorch_cpu.so's), or NULL
static int gu_mkl_looked = 0;

// mkl_serv_intel_cpu_true interposes the function of that name with which MKL (linked statically into
// the PyPI wheels' libtorch_cpu.so, and exported from it) decides whether it runs on an Intel CPU: on
// any other CPU it keeps to its AVX2 kernels even where the CPU has AVX-512. A Go binary exports its cgo
// C functions (it is linked with -rdynamic), so the dynamic linker binds MKL's calls to this one. It
// answers 1 when SAFETY_MKL_INTEL_PATH=1 (read at the first call) and otherwise what MKL's own check
// answers, so without the variable nothing changes.
int mkl_serv_intel_cpu_true(void) {
	if (gu_mkl_force < 0) {
		const char *e = getenv("SAFETY_MKL_INTEL_PATH");
		gu_mkl_force = e != NULL && strcmp(e, "1") == 0;
	}
	if (gu_mkl_force) {
		return 1;
	}
	if (!gu_mkl_looked) {
		gu_mkl_real = (int (*)(void))dlsym(RTLD_NEXT, "mkl_serv_intel_cpu_true");
		gu_mkl_looked = 1;
	}
	return gu_mkl_real != NULL ? gu_mkl_real() : 0;
}

static int gu_mkl_interposed(void) {
	return dlsym(RTLD_DEFAULT, "mkl_serv_intel_cpu_true") == (void *)mkl_serv_intel_cpu_true;
}
static int gu_mkl_has_real(void) { return dlsym(RTLD_NEXT, "mkl_serv_intel_cpu_true") != NULL; }
static int gu_mkl_real_answer(void) {
	int (*f)(void) = (int (*)(void))dlsym(RTLD_NEXT, "mkl_serv_intel_cpu_true");
	return f != NULL ? f() : -1;
}
static void gu_mkl_reread(void) { gu_mkl_force = -1; }
*/
import "C"

// MKLIntelPathEnv is the environment variable that lets MKL take its Intel code path (AVX-512 GEMM
// kernels) on a CPU of another vendor: SAFETY_MKL_INTEL_PATH=1. On this project's AMD EPYC (Zen 5) it
// makes the float32 model about 1.8× faster (docs/performance.md, "The batch-1 GEMM gap"). It is read at
// MKL's first CPU check, i.e. the first float32 product: set it before starting the process, or with
// os.Setenv before the first model call. It is undocumented MKL behaviour, so it is off by default.
const MKLIntelPathEnv = "SAFETY_MKL_INTEL_PATH"

// MKLDispatch reports how MKL's CPU-vendor check is answered in this process: interposed (this
// package's mkl_serv_intel_cpu_true is the one the dynamic linker binds; false where libtorch has no
// MKL or links it another way), and intel, the answer MKL gets (true on an Intel CPU, or with
// SAFETY_MKL_INTEL_PATH=1).
func MKLDispatch() (interposed, intel bool) {
	if C.gu_mkl_has_real() == 0 {
		return false, false
	}
	return C.gu_mkl_interposed() != 0, C.mkl_serv_intel_cpu_true() != 0
}

// mklRealAnswer is MKL's own answer (-1 without MKL); mklReread makes the next check read
// SAFETY_MKL_INTEL_PATH again. For tests.
func mklRealAnswer() int { return int(C.gu_mkl_real_answer()) }
func mklReread()         { C.gu_mkl_reread() }
