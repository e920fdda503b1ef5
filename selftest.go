package safety

import (
	"context"
	"fmt"
	"math"
)

// WithSelfTest makes Load run two different synthetic images through the model and fail with
// ErrCheckpoint when they get the same image embedding (a model that would give every image the same
// verdict, such as one with a zeroed post_layernorm weight) or a degenerate one (ErrNonFinite). Off by
// default: it costs one forward pass of two images (2 ms on the tests' tiny model, about 40 ms on the
// parity model, an estimated 1.4 s for ViT-L/14 in float32 on a 2-core CPU, three times its load).
func WithSelfTest(on bool) Option {
	return func(o *options) error {
		o.selfTest = on
		return nil
	}
}

// selfTest runs a horizontal and a vertical gradient ([2, 3, S, S], values in [−2, 2] as normalised
// pixels are) through the model and compares their embeddings.
func (c *Checker) selfTest() error {
	s := c.info.ImageSize
	plane := s * s
	pix := make([]float32, 2*3*plane)
	for ch := range 3 {
		for y := range s {
			for x := range s {
				i := ch*plane + y*s + x
				pix[i] = float32(4*x)/float32(s) - 2
				pix[3*plane+i] = float32(4*y)/float32(s) - 2
			}
		}
	}
	res, err := c.CheckPixels(context.Background(), pix, 2)
	if err != nil {
		return fmt.Errorf("%w: self-test: %w", ErrCheckpoint, err)
	}
	a, b := res[0].ImageEmbeds, res[1].ImageEmbeds
	var diff, scale float64
	for i := range a {
		diff = math.Max(diff, math.Abs(float64(a[i])-float64(b[i])))
		scale = math.Max(scale, math.Abs(float64(a[i])))
	}
	if diff <= 1e-6*scale {
		return fmt.Errorf("%w: self-test: two different images get the same embedding (largest difference %g): "+
			"every image would get the same verdict", ErrCheckpoint, diff)
	}
	return nil
}
