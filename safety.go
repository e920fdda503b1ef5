package safety

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/clip"
	"github.com/sdsafety/safety/internal/gotchutil"
	"github.com/sdsafety/safety/internal/imageproc"
)

// Result is the verdict and the scores for one image. The JSON names are those of the safetycheck
// command's -json output.
type Result struct {
	// NSFW is diffusers' has_nsfw_concept: some concept score is positive.
	NSFW bool `json:"nsfw"`
	// SpecialCare reports a special-care concept hit (which lowers every NSFW threshold by 0.01).
	SpecialCare bool `json:"special_care"`
	// BadConcepts and SpecialConcepts are the indices of the concepts that hit.
	BadConcepts     []int `json:"bad_concepts"`
	SpecialConcepts []int `json:"special_concepts"`
	// ConceptScores [17] and SpecialScores [3] are diffusers' rounded scores (a score > 0 is a hit):
	// round(cos − threshold + adjustment, 3). Diffusers computes and discards them.
	ConceptScores []float32 `json:"concept_scores"`
	SpecialScores []float32 `json:"special_scores"`
	// CosDist [17] and SpecialCosDist [3] are the raw cosine similarities to the concept embeddings.
	CosDist        []float32 `json:"cos_dist"`
	SpecialCosDist []float32 `json:"special_cos_dist"`
	// ImageEmbeds is the projected CLIP image embedding [P] (768 in the published model).
	ImageEmbeds []float32 `json:"image_embeds"`
	// PooledOutput is the vision tower's pooled output before projection [D].
	PooledOutput []float32 `json:"pooled_output,omitempty"`
	// CustomScores are the scores of the custom concepts (Checker.AddConcept), in the order they
	// were added; nil when there are none. They leave NSFW alone unless WithCustomConceptsCount.
	CustomScores []CustomScore `json:"custom_scores,omitempty"`
}

// Checker is diffusers' StableDiffusionSafetyChecker on libtorch: a CLIP vision tower and projection
// held as gotch tensors on one device, the concept embeddings and thresholds, and the preprocessing
// of the model's feature extractor.
//
// A Checker is safe for concurrent use: model calls are serialised on one OS thread that owns the
// libtorch state, while decoding and preprocessing run on the callers' goroutines. Close releases
// every tensor; afterwards all methods return [ErrClosed].
type Checker struct {
	rt       *gotchutil.Runtime // the model thread and the tensors the checker owns
	tower    *clip.VisionTransformer
	concepts *Concepts
	custom   customConcepts // custom concepts and their text encoder (custom_concepts.go)
	batcher  *batcher       // dynamic batching (batcher.go); nil when off
	proc     imageproc.Config
	info     Info
	opts     options
	device   gotch.Device
	dtype    gotch.DType
}

// Info describes a loaded Checker.
type Info struct {
	Dir            string       // model directory
	WeightsFile    string       // the weights file read
	Device         Device       // DeviceCPU or DeviceCUDA (never auto)
	DType          DType        // compute precision
	Vision         VisionConfig // the vision tower's configuration
	ProjectionDim  int          // width of ImageEmbeds
	Concepts       int          // number of NSFW concepts (17)
	SpecialConcept int          // number of special-care concepts (3)
	Libtorch       string       // libtorch version, "" when unknown
	SDPA           bool         // attention uses scaled_dot_product_attention
	ImageSize      int          // side of the model's square input
	// MappedBytes and CopiedBytes are the bytes of the vision tower's weights held as views of the
	// memory-mapped weights file and as copies (see [WithMappedWeights]).
	MappedBytes, CopiedBytes int64
}

// Load reads a checker from dir, a directory in the Hugging Face layout of
// CompVis/stable-diffusion-safety-checker: config.json, one weights file (model.safetensors,
// pytorch_model.bin or their .fp16 variants; safetensors preferred, the fp16 variant first when
// computing in float16) and optionally preprocessor_config.json (the SD v1 feature extractor's values
// otherwise). Nil options mean the defaults: auto device, float32, batch 8, adjustment 0.
func Load(dir string, opts ...Option) (*Checker, error) {
	o, cfg, err := openConfig(dir, opts, clip.LoadConfig)
	if err != nil {
		return nil, err
	}
	proc, err := loadProcessorConfig(dir, o.processor)
	if err != nil {
		return nil, err
	}
	if proc.DoCenterCrop && (proc.CropHeight != cfg.Vision.ImageSize || proc.CropWidth != cfg.Vision.ImageSize) {
		return nil, fmt.Errorf("%w: preprocessing crops %dx%d but the model takes %dx%d images", ErrCheckpoint,
			proc.CropWidth, proc.CropHeight, cfg.Vision.ImageSize, cfg.Vision.ImageSize)
	}
	weights, rt, err := startModel(dir, o)
	if err != nil {
		return nil, err
	}
	c := &Checker{rt: rt, proc: proc, opts: o}
	c.info = Info{Dir: dir, WeightsFile: weights, DType: o.dtype, Vision: cfg.Vision, ProjectionDim: cfg.ProjectionDim,
		Libtorch: gotchutil.Build().Libtorch, ImageSize: cfg.Vision.ImageSize}
	if err := loadModel(rt, weights, o, true, func(p placement, ck checkpoint.Checkpoint) error {
		return c.load(p, cfg, ck)
	}); err != nil {
		return nil, err
	}
	if o.selfTest {
		if err := c.selfTest(); err != nil {
			c.Close()
			return nil, err
		}
	}
	if o.batchWindow > 0 {
		c.batcher = newBatcher(c, o.batchWindow)
	}
	return c, nil
}

// load runs on the worker thread: it loads the vision tower and the concept head of ck placed as p.
func (c *Checker) load(p placement, cfg clip.Config, ck checkpoint.Checkpoint) error {
	c.device, c.dtype, c.info.Device, c.info.SDPA = p.device, p.dtype, p.where, p.sdpa
	l := p.loading(c.rt, c.opts)
	tower, concepts, err := loadWeights(&c.rt.Owned, ck, cfg, l)
	c.info.MappedBytes, c.info.CopiedBytes = l.MappedBytes, l.CopiedBytes
	if err != nil {
		return err
	}
	c.tower, c.concepts = tower, concepts
	c.info.Concepts, c.info.SpecialConcept = len(concepts.Thresholds), len(concepts.SpecialThresholds)
	return nil
}

func loadProcessorConfig(dir, override string) (imageproc.Config, error) {
	path := override
	if path == "" {
		path = filepath.Join(dir, "preprocessor_config.json")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return imageproc.DefaultConfig(), nil
		}
	}
	cfg, err := imageproc.LoadConfig(path)
	if err != nil {
		return imageproc.Config{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	return cfg, nil
}

// Info describes the loaded model and where it runs.
func (c *Checker) Info() Info { return c.info }

// Close releases every tensor and stops the model thread. A Check running concurrently finishes or
// returns ErrClosed; it never touches freed memory. Close is idempotent.
func (c *Checker) Close() error {
	if c.batcher != nil {
		c.batcher.close()
	}
	return c.rt.Close()
}

// Check preprocesses images exactly as the reference's CLIPImageProcessor does (convert to RGB,
// Pillow-bicubic resize, centre crop, normalise) and checks them. Results are in input order.
// An image that cannot be converted, or has more pixels than WithMaxPixels allows (ErrImageTooLarge),
// fails the call with an error naming its index; ctx cancels between batches and between encoder
// layers. Images are converted and preprocessed one batch (WithBatchSize) at a time, so memory does
// not grow with the number of images.
func (c *Checker) Check(ctx context.Context, images []image.Image) ([]Result, error) {
	if c.rt.Closed() {
		return nil, ErrClosed
	}
	results := make([]Result, 0, len(images))
	for start := 0; start < len(images); start += c.opts.batchSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := min(c.opts.batchSize, len(images)-start)
		pix, err := c.preprocessImages(images[start:start+b], start)
		if err != nil {
			return nil, err
		}
		pooled, embeds, err := c.forward(ctx, pix, b)
		if err != nil {
			return nil, err
		}
		if results, err = c.appendResults(results, pooled, embeds, b); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// CheckPixels checks n preprocessed images: pixels is [n, 3, S, S] float32 in row-major order (S =
// Info().ImageSize), as [Checker.Preprocess] or the reference's pixel_values produce. With
// [WithBatchWindow], a call of fewer images than the batch size may share a model batch with
// concurrent calls (batcher.go).
func (c *Checker) CheckPixels(ctx context.Context, pixels []float32, n int) ([]Result, error) {
	if c.rt.Closed() {
		return nil, ErrClosed
	}
	s := c.info.ImageSize
	per := 3 * s * s
	if n < 0 || n > len(pixels)/per || len(pixels) != n*per { // n > len/per first: n*per may overflow
		return nil, fmt.Errorf("%w: %d pixel values for %d images of 3x%dx%d", ErrInvalidInput, len(pixels), n, s, s)
	}
	if c.batcher != nil && n > 0 && n < c.opts.batchSize {
		return c.batcher.check(ctx, pixels, n)
	}
	results := make([]Result, 0, n)
	for start := 0; start < n; start += c.opts.batchSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := min(c.opts.batchSize, n-start)
		pooled, embeds, err := c.forward(ctx, pixels[start*per:(start+b)*per], b)
		if err != nil {
			return nil, err
		}
		if results, err = c.appendResults(results, pooled, embeds, b); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// appendResults scores b images of one batch (pooled [b·D], embeds [b·P]) and appends their results;
// errors name the image by its index in the whole call (len(results) + i).
func (c *Checker) appendResults(results []Result, pooled, embeds []float32, b int) ([]Result, error) {
	p, d := c.info.ProjectionDim, c.info.Vision.HiddenSize
	start := len(results)
	custom := c.custom.snapshot()
	for i := 0; i < b; i++ {
		r := Result{PooledOutput: pooled[i*d : (i+1)*d : (i+1)*d]}
		if err := c.concepts.score(embeds[i*p:(i+1)*p:(i+1)*p], c.opts.adjustment, &r); err != nil {
			return nil, fmt.Errorf("image %d: %w", start+i, err)
		}
		if err := scoreCustom(custom, r.ImageEmbeds, c.opts.customCount, &r); err != nil {
			return nil, fmt.Errorf("image %d: %w", start+i, err)
		}
		results = append(results, r)
	}
	return results, nil
}

// forward runs the vision tower on b images on the worker thread.
// pixels: [b, 3, S, S] → pooled [b·D], embeds [b·P] (float32, host).
func (c *Checker) forward(ctx context.Context, pixels []float32, b int) (pooled, embeds []float32, err error) {
	s := int64(c.info.ImageSize)
	if c.opts.batchObserver != nil {
		c.opts.batchObserver(b)
	}
	err = c.rt.Run(func() error {
		var t gotchutil.Tape
		defer t.Release()
		var err error
		pooled, embeds, err = c.forwardTensor(ctx, &t, t.Float32(pixels, int64(b), 3, s, s))
		return err
	})
	return pooled, embeds, forwardError(ctx, err)
}

// forwardTensor runs the vision tower on preprocessed pixels already held as a tensor. It runs on the
// worker thread (inside c.rt.Run) and records its tensors on t.
// pixels: [b, 3, S, S], any float dtype, any device → pooled [b·D], embeds [b·P] (float32, host).
func (c *Checker) forwardTensor(ctx context.Context, t *gotchutil.Tape, pixels *ts.Tensor) (pooled, embeds []float32, err error) {
	x := t.ToDevice(pixels, c.device, c.dtype)
	pooledT, embedsT := c.tower.Forward(ctx, t, x)
	if err := t.Err(); err != nil {
		return nil, nil, err
	}
	if pooled, err = gotchutil.Float32s(pooledT); err != nil {
		return nil, nil, err
	}
	if embeds, err = gotchutil.Float32s(embedsT); err != nil {
		return nil, nil, err
	}
	return pooled, embeds, nil
}

// forwardError maps an error of a model call on the worker: ErrClosed for a closed checker, the
// context's error as is, anything else wrapped with "safety: forward".
func forwardError(ctx context.Context, err error) error {
	if errors.Is(err, gotchutil.ErrClosed) {
		err = ErrClosed
	}
	if err != nil && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
		err = fmt.Errorf("safety: forward: %w", err)
	}
	return err
}
