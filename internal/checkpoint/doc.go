// Package checkpoint reads model checkpoints and their config.json in pure Go, without libtorch.
//
// Two weight formats are understood, both behind the [Checkpoint] interface that [Open] returns:
//
//   - safetensors ([OpenSafetensors], [File]): an 8-byte little-endian header length, a JSON header
//     describing every tensor (dtype, shape, byte range), then the raw little-endian data. The header is
//     validated completely when the file is opened (dtypes, shapes, ranges, overlaps).
//   - PyTorch zip checkpoints as written by torch.save since PyTorch 1.6 and by transformers'
//     save_pretrained as pytorch_model.bin ([OpenTorch], [TorchFile]): a zip archive holding
//     <prefix>/data.pkl, a pickle of the state dict, and one <prefix>/data/<key> record per storage.
//     The pickle is run by a restricted interpreter that knows only the opcodes torch.save emits and only
//     the globals a state dict needs (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
//     torch._utils._rebuild_parameter[_with_state] and the torch.*Storage types). Any other global
//     (os.system, builtins.eval, ...) and any other opcode is refused with [ErrUnsafePickle]; nothing in
//     the pickle is ever executed, and every size it declares is bounded before anything is allocated.
//
// Files are memory-mapped read-only (syscall.Mmap on unix, a plain read elsewhere), so the Data of a
// [Tensor] is normally a view into the mapping: no copy, valid until the checkpoint is closed, and it
// must not be written to (the pages are read-only: a write faults). Only non-contiguous PyTorch views and
// deflate-compressed zip records are copied into memory. As with any mapping, the file must not be
// truncated while it is open.
//
// [FindWeights] picks the weights file of a model directory (model.safetensors, pytorch_model.bin and
// their .fp16 variants). The model's config.json is internal/clip's (ParseConfig, ParseTextConfig).
//
// Errors name the file and, where one is involved, the tensor, and wrap one of the sentinel errors
// ([ErrFormat], [ErrUnsupported], [ErrUnsafePickle], [ErrNotFound], [ErrClosed]) so that
// callers can classify them with errors.Is. Nothing in this package panics on bad input.
package checkpoint
