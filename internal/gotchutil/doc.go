// Package gotchutil is the plumbing between this module and gotch/libtorch.
//
// It holds what the model code needs but gotch does not offer in an error-returning, leak-free form:
//
//   - [Worker]: a goroutine locked to one OS thread on which every libtorch call of a model runs.
//     libtorch keeps its grad mode and gotch its last error in thread-local storage, so a call and the
//     check of its error must happen on the same OS thread.
//   - [Tape]: records the tensors an op sequence creates, turns the first failure into a sticky error
//     with the op's name, and drops every intermediate, so that forward code reads like the math and
//     leaks nothing.
//   - [SetNumThreads] / [NumThreads]: libtorch's intra-op thread count (gotch has no call for it).
//   - [ViewCPU]: a CPU tensor viewing caller-owned memory (a memory-mapped checkpoint) without a copy.
//   - [MKLIntelPathEnv] / [MKLDispatch]: MKL's AVX-512 kernels on CPUs of other vendors, by interposing
//     MKL's CPU-vendor check (on by default where the CPU has AVX-512F; SAFETY_MKL_INTEL_PATH=0 turns it off).
//   - [Build]: the libtorch version gotch was built against and the wrappers the version-adaptive
//     build replaced with stubs (cmd/safety-setup), so callers can fall back.
//
// Nothing here ends the process: gotch's Must* helpers exit through the log package and are never used.
package gotchutil
