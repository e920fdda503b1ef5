// Package flock holds an exclusive lock on a file between processes: flock(2) where the system has it,
// the same path within one process elsewhere. The hub cache (huggingface_hub's filelock protocol) and
// the setup cache (cmd/safety-setup) take their locks through it.
package flock
