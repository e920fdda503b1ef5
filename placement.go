package safety

import (
	"fmt"
	"path/filepath"

	"github.com/sugarme/gotch"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/clip"
	"github.com/sdsafety/safety/internal/gotchutil"
)

// The load steps Load and LoadTextEncoder share: options, weights file, model thread, placement,
// checkpoint. Each model reads its own config and assembles its own tower.

// applyOptions applies opts, in order, to the defaults.
func applyOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return options{}, err
		}
	}
	return o, nil
}

// openConfig applies opts and reads dir/config.json with load (clip.LoadConfig or
// clip.LoadTextConfig): the first step of Load and LoadTextEncoder. Errors reading the config wrap
// ErrCheckpoint.
func openConfig[C any](dir string, opts []Option, load func(path string) (C, error)) (options, C, error) {
	var cfg C
	o, err := applyOptions(opts)
	if err != nil {
		return o, cfg, err
	}
	if cfg, err = load(filepath.Join(dir, "config.json")); err != nil {
		return o, cfg, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	return o, cfg, nil
}

// startModel finds the weights file in dir (safetensors first, the fp16 variant first when
// computing in float16) and starts the model thread that will own the model's tensors.
func startModel(dir string, o options) (weights string, rt *gotchutil.Runtime, err error) {
	weights, err = checkpoint.FindWeights(dir, o.dtype == Float16)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	rt, err = gotchutil.NewRuntime()
	if err != nil {
		return "", nil, err
	}
	return weights, rt, nil
}

// loadModel runs, on rt's worker thread, the placement (see place; vision adds the conv2d dtype
// probe) and then load with the opened weights file, which is closed when load returns. On failure
// rt is closed, releasing whatever load recorded.
func loadModel(rt *gotchutil.Runtime, weights string, o options, vision bool,
	load func(p placement, ck checkpoint.Checkpoint) error) error {
	err := rt.Run(func() error {
		p, err := place(o, vision)
		if err != nil {
			return err
		}
		ck, err := checkpoint.Open(weights)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
		defer ck.Close()
		return load(p, ck)
	})
	if err != nil {
		rt.Close()
	}
	return err
}

// placement is where a model computes and how it attends, decided once at load for the checker
// and the text encoder alike.
type placement struct {
	device gotch.Device // gotch.CPU or CUDA device 0
	where  Device       // DeviceCPU or DeviceCUDA (never auto)
	dtype  gotch.DType  // compute dtype
	sdpa   bool         // attention uses scaled_dot_product_attention (plain and is_causal both work)
}

// loading is how a model placed as p loads its weights onto rt: views of the mapped file where o
// allows (WithMappedWeights) and the loader can, the mapping released by rt's Close after the
// model's tensors.
func (p placement) loading(rt *gotchutil.Runtime, o options) *clip.Loading {
	return &clip.Loading{Device: p.device, DType: p.dtype, SDPA: p.sdpa, Map: o.mapped, Hold: rt.Hold}
}

// sdpaProbe reports whether scaled_dot_product_attention runs here; a test replaces it to force the
// explicit attention through Load and LoadTextEncoder.
var sdpaProbe = gotchutil.SDPAWorks

// place applies WithThreads and decides the device (WithDevice; auto takes CUDA when available,
// ErrNoCUDA when cuda is asked for and missing), the compute dtype (WithDType, refused with
// ErrUnsupported when this libtorch cannot run the model's ops in it there: conv2d too with
// vision) and the attention kernel (the SDPA probe). It runs on the model's worker thread.
func place(o options, vision bool) (placement, error) {
	if o.threads > 0 {
		if err := gotchutil.SetNumThreads(o.threads); err != nil {
			return placement{}, err
		}
	}
	p := placement{sdpa: sdpaProbe()}
	cuda := gotch.CUDA.IsAvailable()
	switch {
	case o.device == DeviceCUDA && !cuda:
		return placement{}, ErrNoCUDA
	case o.device == DeviceCPU || !cuda:
		p.device, p.where = gotch.CPU, DeviceCPU
	default:
		p.device, p.where = gotch.CudaBuilder(0), DeviceCUDA
	}
	switch o.dtype {
	case Float16:
		p.dtype = gotch.Half
	case BFloat16:
		p.dtype = gotch.BFloat16
	default:
		p.dtype = gotch.Float
	}
	probe := gotchutil.ProbeEncoderDType
	if vision {
		probe = gotchutil.ProbeDType
	}
	if err := probe(p.device, p.dtype); err != nil {
		return placement{}, fmt.Errorf("%w: computing in %s on %s: %v (on a CPU, use float32 or bfloat16)",
			ErrUnsupported, o.dtype, p.where, err)
	}
	return p, nil
}
