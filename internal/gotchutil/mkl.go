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

// gu_mkl_auto: whether the Intel path is taken without SAFETY_MKL_INTEL_PATH: on an x86-64 CPU with
// AVX-512F (where it was measured: docs/performance.md); elsewhere MKL keeps its own answer.
static int gu_mkl_auto(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") != 0;
#else
	return 0;
#endif
}

// mkl_serv_intel_cpu_true interposes the function of that name with which MKL (linked statically into
// the PyPI wheels' libtorch_cpu.so, and exported from it) decides whether it runs on an Intel CPU: on
// any other CPU it keeps to its AVX2 kernels even where the CPU has AVX-512. The executable exports this
// definition (the linker puts a symbol into the dynamic table when a shared library of the link, here
// libtorch_cpu.so behind gotch's wrapper, defines it too), so the dynamic linker binds MKL's calls to this one. It
// answers 1 with SAFETY_MKL_INTEL_PATH=1, or with the variable unset on a CPU with AVX-512F; otherwise
// (SAFETY_MKL_INTEL_PATH=0, or no AVX-512F) what MKL's own check answers. The variable is read once, at
// the first call.
int mkl_serv_intel_cpu_true(void) {
	if (gu_mkl_force < 0) {
		const char *e = getenv("SAFETY_MKL_INTEL_PATH");
		if (e != NULL && strcmp(e, "1") == 0) {
			gu_mkl_force = 1;
		} else if (e != NULL && strcmp(e, "0") == 0) {
			gu_mkl_force = 0;
		} else {
			gu_mkl_force = gu_mkl_auto();
		}
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
static int gu_mkl_auto_answer(void) { return gu_mkl_auto(); }
*/
import "C"

// MKLIntelPathEnv is the environment variable that chooses whether MKL takes its Intel code path (its
// AVX-512 GEMM kernels) on a CPU of another vendor, by answering MKL's CPU-vendor check:
//
//   - unset (the default): yes on an x86-64 CPU with AVX-512F, else MKL's own answer. On this project's
//     AMD EPYC (Zen 5) that makes the float32 model about 1.8× faster at batch 1 and 2× at batch 8
//     (docs/performance.md, "MKL's vendor check"); outputs differ from MKL's AVX2 path only in summation
//     order (the parity fixture and the full-size test pass either way);
//   - SAFETY_MKL_INTEL_PATH=1: yes on any CPU;
//   - SAFETY_MKL_INTEL_PATH=0: MKL's own answer (what the Python reference gets).
//
// It is read at MKL's first CPU check, i.e. the first float32 product: set it before starting the
// process, or with os.Setenv before the first model call. It relies on an undocumented MKL function; a
// libtorch whose MKL no longer calls it is unaffected ([MKLDispatch] then reports interposed=false).
const MKLIntelPathEnv = "SAFETY_MKL_INTEL_PATH"

// MKLDispatch reports how MKL's CPU-vendor check is answered in this process: interposed (this
// package's mkl_serv_intel_cpu_true is the one the dynamic linker binds; false where libtorch has no
// MKL or links it another way), and intel, the answer MKL gets (true on an Intel CPU, or with
// SAFETY_MKL_INTEL_PATH=1, or unset on a CPU with AVX-512F).
func MKLDispatch() (interposed, intel bool) {
	if C.gu_mkl_has_real() == 0 {
		return false, false
	}
	return C.gu_mkl_interposed() != 0, C.mkl_serv_intel_cpu_true() != 0
}

// mklAutoAnswer is the answer without SAFETY_MKL_INTEL_PATH: whether this CPU has AVX-512F (x86-64).
func mklAutoAnswer() bool { return C.gu_mkl_auto_answer() != 0 }

// mklRealAnswer is MKL's own answer (-1 without MKL); mklReread makes the next check read
// SAFETY_MKL_INTEL_PATH again. For tests.
func mklRealAnswer() int { return int(C.gu_mkl_real_answer()) }
func mklReread()         { C.gu_mkl_reread() }
