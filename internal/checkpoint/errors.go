package checkpoint

import "errors"

// Sentinel errors. Every error returned by this package wraps at most one of them (plus, where it
// applies, the underlying os or encoding/json error), so errors.Is classifies a failure.
var (
	// ErrFormat reports a file whose bytes do not follow its format: a truncated or inconsistent
	// safetensors header, a zip that is not a torch checkpoint, a malformed pickle, a tensor view that
	// does not fit its storage.
	ErrFormat = errors.New("malformed checkpoint")

	// ErrUnsupported reports a well-formed file that uses something this package does not handle: a
	// dtype outside [DType]'s set, a big-endian torch archive, a legacy (pre-1.6, non-zip) torch.save file.
	ErrUnsupported = errors.New("unsupported checkpoint feature")

	// ErrUnsafePickle reports a pickle that uses a global or an opcode outside the restricted set a
	// torch state dict needs. The pickle is refused before anything it names is looked up or called.
	ErrUnsafePickle = errors.New("refused pickle")

	// ErrNotFound reports a missing tensor name or a model directory without a weights file.
	ErrNotFound = errors.New("not found")

	// ErrClosed reports use of a checkpoint after Close.
	ErrClosed = errors.New("checkpoint closed")
)
