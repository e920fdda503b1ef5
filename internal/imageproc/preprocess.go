package imageproc

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// ResizeSize returns the size (width, height) the image is resized to, like transformers'
// PIL-backend resize: for ShortestEdge S the short side becomes S and the long side
// int(S·long/short) (truncated), capped by LongestEdge as in get_size_with_aspect_ratio; otherwise
// Height×Width. With DoResize false it returns the source size.
func (c Config) ResizeSize(srcW, srcH int) (w, h int, err error) {
	if srcW <= 0 || srcH <= 0 {
		return 0, 0, fmt.Errorf("imageproc: %dx%d image: %w", srcW, srcH, ErrEmptyImage)
	}
	if !c.DoResize {
		return srcW, srcH, nil
	}
	s := c.Size
	switch {
	case s.ShortestEdge > 0 && s.LongestEdge > 0:
		h, w = sizeWithAspectRatio(srcH, srcW, s.ShortestEdge, s.LongestEdge)
	case s.ShortestEdge > 0:
		short, long := srcW, srcH
		if srcW > srcH {
			short, long = srcH, srcW
		}
		newLong := int(float64(s.ShortestEdge*long) / float64(short))
		if srcW <= srcH {
			w, h = s.ShortestEdge, newLong
		} else {
			w, h = newLong, s.ShortestEdge
		}
	case s.Height > 0 && s.Width > 0:
		w, h = s.Width, s.Height
	default:
		return 0, 0, fmt.Errorf("imageproc: invalid size %+v", s)
	}
	if w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("imageproc: %dx%d image resizes to %dx%d: %w", srcW, srcH, w, h, ErrEmptyImage)
	}
	if w > math.MaxInt32 || h > math.MaxInt32 {
		return 0, 0, fmt.Errorf("imageproc: %dx%d image resizes to %dx%d: %w", srcW, srcH, w, h, ErrTooLarge)
	}
	return w, h, nil
}

// sizeWithAspectRatio is transformers' get_size_with_aspect_ratio((height, width), size, max_size),
// with Python's float arithmetic and round-half-to-even; it returns (height, width).
func sizeWithAspectRatio(height, width, size, maxSize int) (int, int) {
	minOrig := float64(min(height, width))
	maxOrig := float64(max(height, width))
	raw := -1.0
	if maxOrig/minOrig*float64(size) > float64(maxSize) {
		raw = float64(maxSize) * minOrig / maxOrig
		size = int(math.RoundToEven(raw))
	}
	switch {
	case (height <= width && height == size) || (width <= height && width == size):
		return height, width
	case width < height:
		if raw >= 0 {
			return int(raw * float64(height) / float64(width)), size
		}
		return int(float64(size*height) / float64(width)), size
	default:
		if raw >= 0 {
			return size, int(raw * float64(width) / float64(height))
		}
		return size, int(float64(size*width) / float64(height))
	}
}

// OutputSize returns the size (width, height) of the preprocessed image for a srcW×srcH input: the
// crop size with DoCenterCrop, else the resize size.
func (c Config) OutputSize(srcW, srcH int) (w, h int, err error) {
	w, h, err = c.ResizeSize(srcW, srcH)
	if err != nil {
		return 0, 0, err
	}
	if c.DoCenterCrop {
		return c.CropWidth, c.CropHeight, nil
	}
	return w, h, nil
}

// Geometry is the resize and centre crop of one input size, as [Config.Preprocess] applies them
// and CheckTensor's fast path mirrors on tensors.
type Geometry struct {
	ResizeW, ResizeH int // size after the resize (Config.ResizeSize)
	OutW, OutH       int // size of the output: the crop with DoCenterCrop, else the resize size
	// Top and Left place the output in the resized image: floor((resized − out)/2) with the centre
	// crop (negative where the image is smaller than the crop: zeros are padded there), 0 without.
	Top, Left int
	// X0, Y0, X1, Y1 bound the part of the resized image the output keeps: [Y0, Y1) × [X0, X1).
	X0, Y0, X1, Y1 int
}

// Geometry returns the resize and crop geometry for a srcW×srcH input.
func (c Config) Geometry(srcW, srcH int) (Geometry, error) {
	rw, rh, err := c.ResizeSize(srcW, srcH)
	if err != nil {
		return Geometry{}, err
	}
	g := Geometry{ResizeW: rw, ResizeH: rh, OutW: rw, OutH: rh}
	if c.DoCenterCrop {
		g.OutW, g.OutH = c.CropWidth, c.CropHeight
		g.Top, g.Left = floorDiv(rh-g.OutH, 2), floorDiv(rw-g.OutW, 2)
	}
	g.Y0, g.Y1 = max(g.Top, 0), min(g.Top+g.OutH, rh)
	g.X0, g.X1 = max(g.Left, 0), min(g.Left+g.OutW, rw)
	return g, nil
}

// Padded reports whether the output has zero padding (the image is smaller than the crop).
func (g Geometry) Padded() bool {
	return g.Y0-g.Top > 0 || g.X0-g.Left > 0 || g.Y1-g.Top < g.OutH || g.X1-g.Left < g.OutW
}

// lut returns, per channel, the float32 value of every 8-bit level after rescale and normalise:
// float32(float64(v)·rescale_factor), then (x − float32(mean))/float32(std) in float32, exactly the
// operations (and roundings) of transformers' rescale and normalize.
func (c Config) lut() *[3][256]float32 {
	var t [3][256]float32
	for ch := range 3 {
		m, s := float32(c.ImageMean[ch]), float32(c.ImageStd[ch])
		for v := range 256 {
			x := float32(v)
			if c.DoRescale {
				x = float32(float64(v) * c.RescaleFactor)
			}
			if c.DoNormalize {
				x = float32(float32(x-m) / s)
			}
			t[ch][v] = x
		}
	}
	return &t
}

// Preprocess turns src into the model input: resize (Config.ResizeSize, Pillow arithmetic), centre
// crop (top = (H−cropH)//2, left = (W−cropW)//2, floor division; where the image is smaller than the
// crop the missing pixels are zeros before rescaling, as transformers pads), rescale, normalise.
// dst receives float32 values in CHW order, shape [3, h, w] with (w, h) = OutputSize, so
// len(dst) must be 3·w·h.
func (c Config) Preprocess(src *RGB, dst []float32) error {
	if err := c.Validate(); err != nil {
		return err
	}
	return c.preprocess(src, dst, c.lut(), runtime.GOMAXPROCS(0))
}

func (c Config) preprocess(src *RGB, dst []float32, lut *[3][256]float32, workers int) error {
	if err := src.validate(); err != nil {
		return err
	}
	g, err := c.Geometry(src.Width, src.Height)
	if err != nil {
		return err
	}
	rw, rh, ow, oh, top, left := g.ResizeW, g.ResizeH, g.OutW, g.OutH, g.Top, g.Left
	if len(dst) != 3*ow*oh {
		return fmt.Errorf("imageproc: preprocess: dst has %d values, want 3x%dx%d = %d", len(dst), oh, ow, 3*ow*oh)
	}
	// The part of the resized image that the crop keeps.
	x0, y0, x1, y1 := g.X0, g.Y0, g.X1, g.Y1
	region := &RGB{Width: x1 - x0, Height: y1 - y0}
	if region.Width == rw && region.Height == rh && rw == src.Width && rh == src.Height {
		region = src // no resize, no crop
	} else {
		region.Pix = make([]uint8, region.Width*region.Height*3)
		if err := resizeRegion(src, rw, rh, c.Resample, x0, y0, region, workers); err != nil {
			return err
		}
	}
	plane := ow * oh
	if g.Padded() {
		for ch := range 3 {
			z := lut[ch][0]
			p := dst[ch*plane : (ch+1)*plane]
			for i := range p {
				p[i] = z
			}
		}
	}
	l0, l1, l2 := &lut[0], &lut[1], &lut[2]
	for y := 0; y < region.Height; y++ {
		in := region.Pix[y*region.Width*3 : (y+1)*region.Width*3]
		o := (y+y0-top)*ow + (x0 - left)
		d0 := dst[o : o+region.Width]
		d1 := dst[plane+o : plane+o+region.Width]
		d2 := dst[2*plane+o : 2*plane+o+region.Width]
		for x := range d0 {
			p := in[3*x : 3*x+3 : 3*x+3]
			d0[x] = l0[p[0]]
			d1[x] = l1[p[1]]
			d2[x] = l2[p[2]]
		}
	}
	return nil
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// PreprocessBatch preprocesses every image (see Preprocess) into one [B, 3, h, w] float32 tensor
// (batch-major, CHW per image). All images must yield the same output size (always true with centre
// cropping). Images are processed in parallel on up to GOMAXPROCS goroutines.
func (c Config) PreprocessBatch(srcs []*RGB) ([]float32, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(srcs) == 0 {
		return nil, nil
	}
	var w, h int
	for i, s := range srcs {
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("imageproc: batch image %d: %w", i, err)
		}
		iw, ih, err := c.OutputSize(s.Width, s.Height)
		if err != nil {
			return nil, fmt.Errorf("imageproc: batch image %d: %w", i, err)
		}
		if i == 0 {
			w, h = iw, ih
		} else if iw != w || ih != h {
			return nil, fmt.Errorf("imageproc: batch image %d gives %dx%d, image 0 gives %dx%d", i, iw, ih, w, h)
		}
	}
	per := 3 * w * h
	out := make([]float32, len(srcs)*per)
	lut := c.lut()
	procs := runtime.GOMAXPROCS(0)
	workers := min(procs, len(srcs))
	inner := max(1, procs/len(srcs)) // row parallelism when the batch is smaller than the CPU count
	errs := make([]error, len(srcs))
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= len(srcs) {
					return
				}
				errs[k] = c.preprocess(srcs[k], out[k*per:(k+1)*per], lut, inner)
			}
		}()
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("imageproc: batch image %d: %w", k, err)
		}
	}
	return out, nil
}
