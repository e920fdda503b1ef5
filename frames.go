package safety

import (
	"context"
	"fmt"

	"github.com/sdsafety/safety/internal/imageproc"
)

// Checking every frame of an animated input. The default methods ([Checker.PreprocessEncoded],
// [Checker.PreprocessFile], the command without -all-frames) check one image per input, the first
// frame of a GIF and the default image of an APNG, as the reference's Image.open does. The methods
// here are the opt-in alternative for GIFs, whose viewers play every frame.

// DefaultMaxFrames is the default of WithMaxFrames.
const DefaultMaxFrames = imageproc.DefaultMaxFrames

// ErrAnimatedPNG is returned by the all-frames methods for an animated PNG (APNG): only its default
// image can be decoded, and that is what [Checker.PreprocessEncoded] checks.
var ErrAnimatedPNG = imageproc.ErrAnimatedPNG

// WithMaxFrames bounds the all-frames methods ([Checker.CheckEncodedFrames], [Checker.CheckFileFrames],
// [Checker.PreprocessEncodedFrames], [Checker.PreprocessFileFrames]): an input with more than n frames is refused with ErrImageTooLarge before any frame is
// decoded (default DefaultMaxFrames = 1000). WithMaxPixels applies to the canvas (a GIF's logical
// screen), and frames × canvas pixels may be at most 10 × WithMaxPixels (10^9 by default), also
// checked before decoding. Decoding holds one canvas and one frame at a time.
func WithMaxFrames(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("%w: max frames %d", ErrInvalidOption, n)
		}
		o.maxFrames = n
		return nil
	}
}

func (c *Checker) frameOptions() *imageproc.DecodeOptions {
	o := c.decodeOptions()
	o.MaxFrames = c.opts.maxFrames
	return o
}

// eachFrame decodes every frame of data and calls fn with its preprocessed pixels, [3, S, S]. ctx is
// looked at before each frame.
func (c *Checker) eachFrame(ctx context.Context, data []byte, fn func(i int, pix []float32) error) (int, error) {
	return imageproc.DecodeFrames(data, c.frameOptions(), func(i int, img *imageproc.RGB) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		pix, err := c.preprocessRGB(img)
		if err != nil {
			return fmt.Errorf("frame %d: %w", i, err)
		}
		return fn(i, pix)
	})
}

// PreprocessEncodedFrames decodes every frame of an encoded image and preprocesses each like
// [Checker.PreprocessEncoded]: it returns pixels [n, 3, S, S] (S = Info().ImageSize) and n, the frame
// count, ready for [Checker.CheckPixels]. A GIF gives each frame composited on its logical screen as
// Pillow 13 shows it (im.seek(i); im.convert("RGB"): disposal methods, transparency, offsets); every
// other format gives one frame, the image PreprocessEncoded uses; an APNG is refused with
// ErrAnimatedPNG. More than WithMaxFrames frames, or a canvas over WithMaxPixels, is refused with
// ErrImageTooLarge before decoding. The result holds n·3·S·S values (600 KB a frame at S = 224):
// [Checker.CheckEncodedFrames] checks batch by batch instead.
func (c *Checker) PreprocessEncodedFrames(data []byte) ([]float32, int, error) {
	var out []float32
	n, err := c.eachFrame(context.Background(), data, func(_ int, pix []float32) error {
		out = append(out, pix...)
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, n, nil
}

// PreprocessFileFrames is PreprocessEncodedFrames on a file, read as [Checker.PreprocessFile] reads
// it (bounded, no FIFOs or devices). Errors name the file.
func (c *Checker) PreprocessFileFrames(path string) ([]float32, int, error) {
	data, err := imageproc.ReadFile(path, c.decodeOptions())
	if err != nil {
		return nil, 0, err
	}
	pix, n, err := c.PreprocessEncodedFrames(data)
	if err != nil {
		return nil, 0, fmt.Errorf("%w (file %s)", err, path)
	}
	return pix, n, nil
}

// CheckEncodedFrames checks every frame of an encoded image (frames as [Checker.PreprocessEncodedFrames]
// gives them) and returns one Result per frame, in frame order; the input is flagged when any
// Result.NSFW is true. Frames are decoded, preprocessed and checked one batch (WithBatchSize) at a
// time, so memory does not grow with the frame count; ctx is looked at before each frame and between
// batches. Errors name the frame.
func (c *Checker) CheckEncodedFrames(ctx context.Context, data []byte) ([]Result, error) {
	if c.rt.Closed() {
		return nil, ErrClosed
	}
	s := c.info.ImageSize
	per := 3 * s * s
	batch := make([]float32, 0, c.opts.batchSize*per)
	var results []Result
	flush := func() error {
		b := len(batch) / per
		if b == 0 {
			return nil
		}
		first := len(results)
		pooled, embeds, err := c.forward(ctx, batch, b)
		if err == nil {
			results, err = c.appendResults(results, pooled, embeds, b)
		}
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("frames %d to %d: %w", first, first+b-1, err)
		}
		return nil
	}
	_, err := c.eachFrame(ctx, data, func(_ int, pix []float32) error {
		batch = append(batch, pix...)
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	return results, nil
}

// CheckFileFrames is CheckEncodedFrames on a file, read as [Checker.PreprocessFile] reads it.
// Errors name the file.
func (c *Checker) CheckFileFrames(ctx context.Context, path string) ([]Result, error) {
	data, err := imageproc.ReadFile(path, c.decodeOptions())
	if err != nil {
		return nil, err
	}
	res, err := c.CheckEncodedFrames(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return res, nil
}
