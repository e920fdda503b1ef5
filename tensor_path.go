package safety

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/gotchutil"
	"github.com/sdsafety/safety/internal/imageproc"
)

// The diffusion-pipeline tensor path: checking a decoded batch as a diffusion app holds it, the way
// diffusers' StableDiffusionPipeline.run_safety_checker does:
//
//	x [B,3,H,W] ─VaeImageProcessor.postprocess(output_type="pil")─▶ B PIL images ─CLIPImageProcessor─▶
//	pixel_values [B,3,S,S] ─StableDiffusionSafetyChecker.forward─▶ has_nsfw_concept, x with flagged images zeroed
//
// where postprocess is (x·0.5 + 0.5).clamp(0, 1) in x's dtype and device, then
// .cpu().permute(0, 2, 3, 1).float().numpy(), then numpy_to_pil: (images·255).round().astype("uint8")
// (float32 product, numpy's round half to even).

// TensorOptions configures [Checker.CheckTensor]. A nil *TensorOptions means the zero value: the
// exact path, for VAE decoder output in [−1, 1].
type TensorOptions struct {
	// ZeroToOne says the images are already in [0, 1] (for example a pipeline's output_type="pt"
	// images after postprocess): they are only clamped to [0, 1]. By default they are in [−1, 1], the
	// VAE decoder's range, and are mapped with (x·0.5 + 0.5).clamp(0, 1) like diffusers' denormalize.
	ZeroToOne bool
	// Fast preprocesses on the tensor's device with libtorch instead of converting the images to
	// 8-bit on the host and running the Pillow-exact preprocessing: close to, not bit-equal with,
	// the reference (see [Checker.CheckTensor]).
	Fast bool
}

// TensorResult is the answer of [Checker.CheckTensor].
type TensorResult struct {
	// Results are the verdicts and scores, one per image, in batch order.
	Results []Result
	// Images: [B, 3, H, W], a new tensor in the input's dtype and on its device: a copy of the input
	// (unclamped, values as given) in which every image with Results[i].NSFW is replaced by zeros,
	// as diffusers' safety checker does (images[idx] = zeros). The input tensor is left untouched.
	// The caller owns Images and must release it with Images.Drop().
	Images *ts.Tensor
}

// CheckTensor checks a batch of decoded images held as a tensor, the way a diffusion pipeline runs
// its safety checker on the VAE decoder's output.
//
// images: [B, 3, H, W] of dtype float32, float16, bfloat16 (or float64), on any device; values in
// [−1, 1] (the VAE decoder's range), or in [0, 1] with opts.ZeroToOne. Values out of range are
// clamped as the reference does; they are not an error. A nil opts means the defaults.
//
// The exact path (the default) reproduces diffusers bit for bit: (x·0.5 + 0.5).clamp(0, 1)
// computed in the input's dtype on its device (for float32 input: float32 arithmetic), copied to
// the host as float32, converted to 8 bits with numpy_to_pil's (v·255).round() (float32 product,
// round half to even), then preprocessed exactly like [Checker.Check] preprocesses an RGB image
// (Pillow-bicubic resize, centre crop, rescale, normalise) and checked with [Checker.CheckPixels].
//
// The fast path (opts.Fast) stays on the tensor's device: the same mapping to [0, 1] and to the
// 8-bit levels (as float32 values 0..255, rounded half to even), then libtorch's antialiased resize
// of the shortest edge (_upsample_bicubic2d_aa, i.e. interpolate(mode="bicubic", antialias=True);
// _upsample_bilinear2d_aa for a bilinear processor config; plain upsample_bicubic2d only when the
// libtorch build lacks the antialiased op), done like Pillow as a horizontal then a vertical pass,
// each rounded half up and clipped to 8-bit levels; then the centre crop with narrow (zero padding
// where the image is smaller than the crop), rescale and normalisation with the processor's mean
// and std, and the vision tower directly. It differs from Pillow only in the resize arithmetic
// (float weights instead of Pillow's 22-bit fixed point): with the bicubic filter, on the golden
// 64×96 batch (upscaled) and on 512×512 batches (downscaled), pixel values differ by at most 2
// levels of 255 (0.03 after normalisation), in under 3% of the values, and the verdicts are the
// same. Processor filters other than bicubic and bilinear give ErrUnsupported. Images whose resized
// width or height would exceed 16·S (extreme aspect ratios, such as 1×5000) take the exact path, so
// the fast path's memory is bounded by the crop, not by the input's shape.
//
// Errors wrap [ErrInvalidInput] for a nil tensor, a rank other than 4, a channel count other than
// 3, an integer, bool or complex dtype, an empty image (H or W = 0), and NaN or ±Inf anywhere in
// the batch (such a batch is never reported as safe); [ErrClosed] after Close. An empty batch
// (B = 0) gives no results and an empty Images tensor. ctx cancels between batches and between
// encoder layers.
func (c *Checker) CheckTensor(ctx context.Context, images *ts.Tensor, opts *TensorOptions) (*TensorResult, error) {
	if c.rt.Closed() {
		return nil, ErrClosed
	}
	if images == nil || images.Ctensor() == nil {
		return nil, fmt.Errorf("%w: images tensor is nil", ErrInvalidInput)
	}
	var o TensorOptions
	if opts != nil {
		o = *opts
	}
	var (
		results []Result
		err     error
	)
	if o.Fast {
		results, err = c.checkTensorFast(ctx, images, o)
	} else {
		results, err = c.checkTensorExact(ctx, images, o)
	}
	if err != nil {
		return nil, err
	}
	out, err := c.censorTensor(images, results)
	if err != nil {
		return nil, err
	}
	return &TensorResult{Results: results, Images: out}, nil
}

// tensorShape is what inspectTensor learns about a valid images tensor.
type tensorShape struct {
	b, h, w int64
	device  gotch.Device
}

// inspectTensor validates images on the worker thread: [B, 3, H, W] with H, W > 0, a floating-point
// dtype, and only finite values. Every error wraps ErrInvalidInput, except a libtorch failure of
// the finiteness check itself.
func inspectTensor(images *ts.Tensor) (tensorShape, error) {
	sz, err := images.Size()
	if err != nil {
		return tensorShape{}, fmt.Errorf("%w: images tensor: %v", ErrInvalidInput, gotchutil.TorchError("size", err))
	}
	if len(sz) != 4 {
		return tensorShape{}, fmt.Errorf("%w: images tensor has shape %v (rank %d), want [B, 3, H, W]", ErrInvalidInput, sz, len(sz))
	}
	if sz[1] != 3 {
		return tensorShape{}, fmt.Errorf("%w: images tensor has %d channels (shape %v), want 3", ErrInvalidInput, sz[1], sz)
	}
	if sz[2] <= 0 || sz[3] <= 0 {
		return tensorShape{}, fmt.Errorf("%w: images tensor holds %dx%d images (shape %v)", ErrInvalidInput, sz[3], sz[2], sz)
	}
	switch dt := images.DType(); dt {
	case gotch.Float, gotch.Half, gotch.BFloat16, gotch.Double:
	default:
		return tensorShape{}, fmt.Errorf("%w: images tensor has dtype %v, want a floating-point one (float32, float16, bfloat16, float64)", ErrInvalidInput, dt)
	}
	dev, err := images.Device()
	if err != nil {
		return tensorShape{}, fmt.Errorf("safety: images tensor: %w", gotchutil.TorchError("device", err))
	}
	var t gotchutil.Tape
	defer t.Release()
	y, err := images.Isfinite(false)
	fin := t.Record("isfinite", y, err)
	if t.Ok() {
		y, err = fin.All(false)
		fin = t.Record("all", y, err)
	}
	if err := t.Err(); err != nil {
		return tensorShape{}, fmt.Errorf("safety: check images tensor: %w", err)
	}
	all, err := gotchutil.Float32s(fin)
	if err != nil {
		return tensorShape{}, fmt.Errorf("safety: check images tensor: %w", err)
	}
	if len(all) != 1 || all[0] == 0 {
		return tensorShape{}, fmt.Errorf("%w: images tensor holds NaN or Inf values", ErrInvalidInput)
	}
	return tensorShape{b: sz[0], h: sz[2], w: sz[3], device: dev}, nil
}

// toUnit maps images to [0, 1] in their own dtype and on their device, as diffusers'
// VaeImageProcessor.denormalize does: (x·0.5 + 0.5).clamp(0, 1); or clamp(0, 1) alone for [0, 1]
// input. x: [B, 3, H, W] → [B, 3, H, W], a new tensor (x is not modified).
func toUnit(t *gotchutil.Tape, x *ts.Tensor, zeroToOne bool) *ts.Tensor {
	if !zeroToOne {
		x = t.AddScalar(t.Scale(x, 0.5), 0.5)
	}
	return t.Clamp(x, 0, 1)
}

// toUint8 is numpy_to_pil's (v·255).round().astype("uint8") for one float32 value in [0, 1]: the
// product rounded to float32, then rounded half to even.
func toUint8(v float32) uint8 {
	p := float32(v * 255) // the conversion forces float32 rounding of the product
	r := math.RoundToEven(float64(p))
	return uint8(min(max(r, 0), 255))
}

// workerError maps gotchutil's ErrClosed to ErrClosed.
func workerError(err error) error {
	if errors.Is(err, gotchutil.ErrClosed) {
		return ErrClosed
	}
	return err
}

// tensorRGB converts a batch to 8-bit images exactly as VaeImageProcessor.postprocess(output_type=
// "pil") does (see CheckTensor). images: [B, 3, H, W] → B images of W×H, packed RGB.
func (c *Checker) tensorRGB(images *ts.Tensor, o TensorOptions) ([]*imageproc.RGB, error) {
	var (
		shape tensorShape
		vals  []float32 // [B, 3, H, W], float32, in [0, 1]
	)
	err := c.rt.Run(func() error {
		var err error
		if shape, err = inspectTensor(images); err != nil {
			return err
		}
		var t gotchutil.Tape
		defer t.Release()
		u := toUnit(&t, images, o.ZeroToOne)
		if err := t.Err(); err != nil {
			return fmt.Errorf("safety: images tensor to [0, 1]: %w", err)
		}
		// .cpu().float(): the values in float32 on the host (the permute to HWC is done below).
		if vals, err = gotchutil.Float32s(u); err != nil {
			return fmt.Errorf("safety: copy images tensor: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, workerError(err)
	}
	b, h, w := int(shape.b), int(shape.h), int(shape.w)
	plane := h * w
	if len(vals) != b*3*plane {
		return nil, fmt.Errorf("safety: images tensor gave %d values for shape [%d, 3, %d, %d]", len(vals), b, h, w)
	}
	rgbs := make([]*imageproc.RGB, b)
	for i := range rgbs {
		rgb := &imageproc.RGB{Width: w, Height: h, Pix: make([]uint8, 3*plane)}
		for ch := range 3 {
			src := vals[(3*i+ch)*plane : (3*i+ch+1)*plane]
			for p, v := range src {
				rgb.Pix[3*p+ch] = toUint8(v)
			}
		}
		rgbs[i] = rgb
	}
	return rgbs, nil
}

// checkTensorExact is the exact path of CheckTensor.
func (c *Checker) checkTensorExact(ctx context.Context, images *ts.Tensor, o TensorOptions) ([]Result, error) {
	rgbs, err := c.tensorRGB(images, o)
	if err != nil {
		return nil, err
	}
	if len(rgbs) == 0 {
		return []Result{}, nil
	}
	pix, err := c.preprocessTensorRGB(rgbs)
	if err != nil {
		return nil, err
	}
	return c.CheckPixels(ctx, pix, len(rgbs))
}

// preprocessTensorRGB preprocesses same-sized images like Check does: [n, 3, S, S].
func (c *Checker) preprocessTensorRGB(rgbs []*imageproc.RGB) ([]float32, error) {
	s := c.info.ImageSize
	w, h, err := c.proc.OutputSize(rgbs[0].Width, rgbs[0].Height)
	if err != nil {
		return nil, fmt.Errorf("%w: images tensor: %v", ErrInvalidInput, err)
	}
	if w != s || h != s {
		return nil, fmt.Errorf("%w: preprocessing gives %dx%d for %dx%d images, the model takes %dx%d",
			ErrInvalidInput, w, h, rgbs[0].Width, rgbs[0].Height, s, s)
	}
	pix, err := c.proc.PreprocessBatch(rgbs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return pix, nil
}

// fastPlan is the geometry of the fast path's resize and crop for one input size.
type fastPlan struct {
	w, h       int64 // input size
	rw, rh     int64 // size after the resize
	x0, y0     int64 // the kept region of the resized image: [y0, y0+ch) × [x0, x0+cw)
	cw, ch     int64
	padL, padR int64 // zeros added around the kept region (where the image is smaller than the crop)
	padT, padB int64
}

// planFast computes the fast path's geometry with the processor's own (imageproc.Config.Geometry,
// the one the host preprocessing uses).
func (c *Checker) planFast(w, h int) (fastPlan, error) {
	s := c.info.ImageSize
	g, err := c.proc.Geometry(w, h)
	if err != nil {
		return fastPlan{}, fmt.Errorf("%w: images tensor: %v", ErrInvalidInput, err)
	}
	if g.OutW != s || g.OutH != s {
		return fastPlan{}, fmt.Errorf("%w: preprocessing gives %dx%d for %dx%d images, the model takes %dx%d",
			ErrInvalidInput, g.OutW, g.OutH, w, h, s, s)
	}
	rw, rh := g.ResizeW, g.ResizeH
	if (rw != w || rh != h) && c.proc.Resample != imageproc.Bicubic && c.proc.Resample != imageproc.Bilinear {
		return fastPlan{}, fmt.Errorf("%w: the fast tensor path resizes with bicubic or bilinear filters, the processor asks for %v",
			ErrUnsupported, c.proc.Resample)
	}
	return fastPlan{w: int64(w), h: int64(h), rw: int64(rw), rh: int64(rh),
		x0: int64(g.X0), y0: int64(g.Y0), cw: int64(g.X1 - g.X0), ch: int64(g.Y1 - g.Y0),
		padL: int64(g.X0 - g.Left), padR: int64(g.Left + g.OutW - g.X1),
		padT: int64(g.Y0 - g.Top), padB: int64(g.Top + g.OutH - g.Y1)}, nil
}

// fastMaxResize bounds the fast path's resized sides, in multiples of the model's input side;
// beyond it CheckTensor takes the exact path (which resizes only the cropped region on the host).
const fastMaxResize = 16

// checkTensorFast is the fast path of CheckTensor: one worker call per batch of WithBatchSize
// images, each preprocessing its slice of the input on the input's device and running the tower.
func (c *Checker) checkTensorFast(ctx context.Context, images *ts.Tensor, o TensorOptions) ([]Result, error) {
	var shape tensorShape
	err := c.rt.Run(func() error {
		var err error
		shape, err = inspectTensor(images)
		return err
	})
	if err != nil {
		return nil, workerError(err)
	}
	plan, err := c.planFast(int(shape.w), int(shape.h))
	if err != nil {
		return nil, err
	}
	if limit := int64(fastMaxResize * c.info.ImageSize); plan.rw > limit || plan.rh > limit {
		// An extreme aspect ratio (a 1×5000 image resizes to 224×1120000): the device resize would
		// hold the whole resized image; the exact path resizes only the part the crop keeps.
		return c.checkTensorExact(ctx, images, o)
	}
	results := make([]Result, 0, shape.b)
	for start := int64(0); start < shape.b; start += int64(c.opts.batchSize) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(int64(c.opts.batchSize), shape.b-start)
		var pooled, embeds []float32
		err := c.rt.Run(func() error {
			var t gotchutil.Tape
			defer t.Release()
			x := c.fastPixels(&t, t.Narrow(images, 0, start, n), o, plan, shape.device)
			var err error
			pooled, embeds, err = c.forwardTensor(ctx, &t, x)
			return err
		})
		if err := forwardError(ctx, err); err != nil {
			return nil, err
		}
		if results, err = c.appendResults(results, pooled, embeds, int(n)); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// fastPixels preprocesses on the device of x (see CheckTensor, fast path); it runs on the worker
// thread. x: [b, 3, H, W] → pixels [b, 3, S, S] float32 on device.
func (c *Checker) fastPixels(t *gotchutil.Tape, x *ts.Tensor, o TensorOptions, p fastPlan, device gotch.Device) *ts.Tensor {
	u := t.ToDType(toUnit(t, x, o.ZeroToOne), gotch.Float)
	u = t.Round(t.Scale(u, 255)) // numpy_to_pil's 8-bit levels, as float32 0..255
	// Pillow's pass order: horizontal, then vertical, each rounded and clipped to 8 bits. The crop's
	// columns are taken between the passes: the vertical pass treats each column on its own, so this
	// is the same result without the vertical pass ever holding columns the crop drops.
	if p.rw != p.w {
		u = t.Clamp(roundHalfUp(t, resizeAA(t, u, p.h, p.rw, c.proc.Resample)), 0, 255)
	}
	if c.proc.DoCenterCrop && (p.x0 != 0 || p.cw != p.rw) {
		u = t.Narrow(u, 3, p.x0, p.cw)
	}
	if p.rh != p.h {
		u = t.Clamp(roundHalfUp(t, resizeAA(t, u, p.rh, p.cw, c.proc.Resample)), 0, 255)
	}
	if c.proc.DoCenterCrop {
		if p.y0 != 0 || p.ch != p.rh {
			u = t.Narrow(u, 2, p.y0, p.ch)
		}
		if p.padL+p.padR+p.padT+p.padB > 0 && t.Ok() {
			y, err := u.ConstantPadNd([]int64{p.padL, p.padR, p.padT, p.padB}, false)
			u = t.Record("constant_pad_nd", y, err)
		}
	}
	if c.proc.DoRescale {
		u = t.Scale(u, c.proc.RescaleFactor)
	}
	if c.proc.DoNormalize {
		var mean, std [3]float32
		for i := range 3 {
			mean[i], std[i] = float32(c.proc.ImageMean[i]), float32(c.proc.ImageStd[i])
		}
		m := t.ToDevice(t.Float32(mean[:], 1, 3, 1, 1), device, gotch.Float)
		s := t.ToDevice(t.Float32(std[:], 1, 3, 1, 1), device, gotch.Float)
		u = t.Div(t.Sub(u, m), s)
	}
	return u
}

// roundHalfUp is floor(x + 0.5), the rounding of Pillow's fixed-point resampling.
func roundHalfUp(t *gotchutil.Tape, x *ts.Tensor) *ts.Tensor {
	x = t.AddScalar(x, 0.5)
	if !t.Ok() {
		return nil
	}
	y, err := x.Floor(false)
	return t.Record("floor", y, err)
}

// hasOp reports whether this libtorch build has a working gotch wrapper for op (a variable so that
// tests can exercise the fallback).
var hasOp = gotchutil.HasOp

// resizeAA resizes x: [B, C, H, W] float to [B, C, h, w] with libtorch's antialiased bicubic (or
// bilinear) interpolation, align_corners=false: torch's interpolate(..., antialias=True), the
// float counterpart of Pillow's resize (gotchutil's Tape.UpsampleAA). When this libtorch build
// lacks the op, the non-antialiased upsample_bicubic2d / upsample_bilinear2d is used instead.
func resizeAA(t *gotchutil.Tape, x *ts.Tensor, h, w int64, filter imageproc.Filter) *ts.Tensor {
	if !t.Ok() {
		return nil
	}
	if x == nil {
		t.Fail("resize", errors.New("nil tensor operand"))
		return nil
	}
	size := []int64{h, w}
	bilinear := filter == imageproc.Bilinear
	op := "_upsample_bicubic2d_aa"
	if bilinear {
		op = "_upsample_bilinear2d_aa"
	}
	if !hasOp(op) {
		if bilinear {
			y, err := x.UpsampleBilinear2d(size, false, nil, nil, false)
			return t.Record("upsample_bilinear2d", y, err)
		}
		y, err := x.UpsampleBicubic2d(size, false, nil, nil, false)
		return t.Record("upsample_bicubic2d", y, err)
	}
	return t.UpsampleAA(x, h, w, bilinear)
}

// censorTensor returns a new tensor: images with every image whose result is NSFW replaced by zeros,
// in the input's dtype and on its device (diffusers: images[idx] = zeros). images is not modified.
// images: [B, 3, H, W], len(results) == B → [B, 3, H, W].
func (c *Checker) censorTensor(images *ts.Tensor, results []Result) (*ts.Tensor, error) {
	var out *ts.Tensor
	err := c.rt.Run(func() error {
		var t gotchutil.Tape
		defer t.Release()
		if len(results) == 0 {
			y, err := images.ZerosLike(false)
			out = t.Record("zeros_like", y, err)
		} else {
			// One piece per run of images with the same verdict: a view of the input, or zeros.
			var parts []*ts.Tensor
			for i := 0; i < len(results); {
				j := i + 1
				for j < len(results) && results[j].NSFW == results[i].NSFW {
					j++
				}
				part := t.Narrow(images, 0, int64(i), int64(j-i))
				if results[i].NSFW && t.Ok() {
					y, err := part.ZerosLike(false)
					part = t.Record("zeros_like", y, err)
				}
				parts = append(parts, part)
				i = j
			}
			out = t.Cat(0, parts...) // always a copy, never a view of the input
		}
		if err := t.Err(); err != nil {
			return fmt.Errorf("safety: censor images tensor: %w", err)
		}
		t.Take(out)
		return nil
	})
	if err != nil {
		return nil, workerError(err)
	}
	return out, nil
}
