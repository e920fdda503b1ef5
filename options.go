package safety

import (
	"fmt"
	"runtime"
	"time"

	"github.com/sdsafety/safety/hub"
)

// Device selects where the model runs.
type Device string

const (
	// DeviceAuto uses CUDA when libtorch was built with it and a GPU is visible, else the CPU.
	DeviceAuto Device = "auto"
	// DeviceCPU runs on the CPU.
	DeviceCPU Device = "cpu"
	// DeviceCUDA runs on the first CUDA GPU; loading fails when there is none.
	DeviceCUDA Device = "cuda"
)

// DType selects the compute precision of the vision tower. Scores are always computed in float32.
type DType string

const (
	// Float32 is the default and the reference's precision.
	Float32 DType = "float32"
	// Float16 halves memory and is fast on GPUs; on a CPU libtorch 2.1 lacks some float16 kernels.
	Float16 DType = "float16"
	// BFloat16 is fast on CPUs with AVX512-BF16/AMX and on recent GPUs.
	BFloat16 DType = "bfloat16"
)

// Option configures [Load].
type Option func(*options) error

type options struct {
	device      Device
	dtype       DType
	batchSize   int
	threads     int
	adjustment  float32
	maxPixels   int64
	maxFrames   int // all-frames methods only (WithMaxFrames); 0: imageproc.DefaultMaxFrames
	orientation bool
	processor   string // preprocessor_config.json path override

	batchWindow   time.Duration    // dynamic batching (WithBatchWindow); 0: off
	batchObserver func(images int) // WithBatchObserver

	mapped       bool   // weights may view the mapped file (WithMappedWeights)
	customCount  bool   // custom concept hits set Result.NSFW (WithCustomConceptsCount)
	selfTest     bool   // Load runs two images through the model (WithSelfTest)
	tokenizerDir string // LoadTextEncoder only: tokenizer folder override (WithTokenizerDir)

	// FromPretrained only
	revision  string
	subfolder string
	hub       *hub.Client
}

func defaultOptions() options {
	return options{device: DeviceAuto, dtype: Float32, batchSize: 8, maxPixels: 100_000_000, mapped: true}
}

// WithDevice selects the device (default [DeviceAuto]).
func WithDevice(d Device) Option {
	return func(o *options) error {
		switch d {
		case DeviceAuto, DeviceCPU, DeviceCUDA:
			o.device = d
			return nil
		}
		return fmt.Errorf("%w: device %q (want auto, cpu or cuda)", ErrInvalidOption, d)
	}
}

// WithDType selects the compute precision (default [Float32]).
func WithDType(d DType) Option {
	return func(o *options) error {
		switch d {
		case Float32, Float16, BFloat16:
			o.dtype = d
			return nil
		}
		return fmt.Errorf("%w: dtype %q (want float32, float16 or bfloat16)", ErrInvalidOption, d)
	}
}

// WithMappedWeights selects how [Load] and [LoadTextEncoder] hold the weights on the CPU (default
// true). With true, a weight whose safetensors data is already in the compute dtype (and
// element-aligned) is a view of the memory-mapped file instead of a copy: loading only scans it for
// NaN and Inf, and the process holds no private copy (the page cache's pages are shared with other
// processes serving the same file). Other weights (a .bin checkpoint, a float16 file computed in
// float32, CUDA) are copied either way; Info().MappedBytes says how much is mapped.
//
// The rule that comes with mapping: the model file must not be truncated or rewritten in place while
// the Checker or TextEncoder is open. Replace model files by renaming a new file over the old one (the
// hub cache does). A mapped file truncated under a running model makes libtorch fault with SIGBUS at
// the next forward, which cannot be turned into an error and ends the process; a file rewritten in
// place changes the weights after their NaN check. Use false (every weight copied at load, the file
// closed afterwards) for model directories that may change under a running process.
func WithMappedWeights(mapped bool) Option {
	return func(o *options) error {
		o.mapped = mapped
		return nil
	}
}

// WithBatchSize sets how many images go through the model at once (default 8).
func WithBatchSize(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("%w: batch size %d (want > 0)", ErrInvalidOption, n)
		}
		o.batchSize = n
		return nil
	}
}

// WithThreads sets libtorch's intra-op thread count (default: libtorch's own choice, usually the
// number of physical cores).
func WithThreads(n int) Option {
	return func(o *options) error {
		if n <= 0 || n > 4*runtime.NumCPU()+64 {
			return fmt.Errorf("%w: threads %d", ErrInvalidOption, n)
		}
		o.threads = n
		return nil
	}
}

// WithAdjustment adds x to every NSFW concept score before the verdict: 0 (the default) reproduces
// diffusers; a positive value makes the checker stricter, a negative one more lenient. It is the
// knob diffusers users patch into the pipeline by hand.
func WithAdjustment(x float32) Option {
	return func(o *options) error {
		if !finite32(x) || x < -1 || x > 1 {
			return fmt.Errorf("%w: adjustment %v (want a value in [-1, 1])", ErrInvalidOption, x)
		}
		o.adjustment = x
		return nil
	}
}

// WithMaxPixels refuses, before decoding, any encoded image whose header declares more than n pixels
// (default 100 megapixels), and any image.Image given to Check or Preprocess with more, before
// converting it ([ErrImageTooLarge]). PreprocessFile also refuses a file larger than 16 bytes a pixel
// plus 16 MiB before reading it.
func WithMaxPixels(n int64) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("%w: max pixels %d", ErrInvalidOption, n)
		}
		o.maxPixels = n
		return nil
	}
}

// WithEXIFOrientation applies the EXIF orientation of decoded images. The reference does not (it
// checks images as stored), so the default is off.
func WithEXIFOrientation(apply bool) Option {
	return func(o *options) error {
		o.orientation = apply
		return nil
	}
}

// WithProcessorConfig reads the preprocessing parameters from path instead of the model directory's
// preprocessor_config.json.
func WithProcessorConfig(path string) Option {
	return func(o *options) error {
		o.processor = path
		return nil
	}
}
