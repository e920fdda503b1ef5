package safety

import (
	"errors"

	"github.com/sdsafety/safety/internal/clip"
	"github.com/sdsafety/safety/internal/gotchutil"
)

var (
	// ErrClosed is returned by a Checker's methods after Close.
	ErrClosed = errors.New("safety: checker closed")
	// ErrNonFinite means the model produced NaN or Inf (for example float16 overflow). Such an image
	// is never reported as safe.
	ErrNonFinite = errors.New("safety: non-finite model output")
	// ErrCheckpoint means the model directory, its config or its weights are unusable.
	ErrCheckpoint = clip.ErrCheckpoint
	// ErrInvalidOption is returned by Load for an out-of-range option.
	ErrInvalidOption = errors.New("safety: invalid option")
	// ErrInvalidInput is returned for inputs of the wrong shape, type or range.
	ErrInvalidInput = errors.New("safety: invalid input")
	// ErrUnsupported means the model or input needs something this build does not provide.
	ErrUnsupported = errors.New("safety: unsupported")
	// ErrNoCUDA is returned by Load with WithDevice(DeviceCUDA) when no CUDA device is usable.
	ErrNoCUDA = errors.New("safety: CUDA is not available")
	// ErrTorch wraps an error reported by libtorch.
	ErrTorch = gotchutil.ErrTorch
)
