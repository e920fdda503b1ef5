package imageproc

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Filter is a resampling filter, numbered like PIL.Image.Resampling (the "resample" value of
// preprocessor_config.json).
type Filter int

// The resampling filters. Their numbers are Pillow's. Nearest is listed for completeness but is not
// supported: Pillow resizes with it through a different (affine transform) code path.
const (
	Nearest  Filter = 0
	Lanczos  Filter = 1
	Bilinear Filter = 2
	Bicubic  Filter = 3
	Box      Filter = 4
	Hamming  Filter = 5
	MKS2013  Filter = 6
	MKS2021  Filter = 7
)

// String returns Pillow's name of the filter.
func (f Filter) String() string {
	switch f {
	case Nearest:
		return "NEAREST"
	case Lanczos:
		return "LANCZOS"
	case Bilinear:
		return "BILINEAR"
	case Bicubic:
		return "BICUBIC"
	case Box:
		return "BOX"
	case Hamming:
		return "HAMMING"
	case MKS2013:
		return "MKS2013"
	case MKS2021:
		return "MKS2021"
	}
	return fmt.Sprintf("Filter(%d)", int(f))
}

// kernel returns the filter function and its support (radius at scale 1) as in Resample.c.
func (f Filter) kernel() (func(float64) float64, float64, bool) {
	switch f {
	case Box:
		return boxFilter, 0.5, true
	case Bilinear:
		return bilinearFilter, 1.0, true
	case Hamming:
		return hammingFilter, 1.0, true
	case Bicubic:
		return bicubicFilter, 2.0, true
	case Lanczos:
		return lanczosFilter, 3.0, true
	case MKS2013:
		return mks2013Filter, 2.5, true
	case MKS2021:
		return mks2021Filter, 4.5, true
	}
	return nil, 0, false
}

// The filter functions follow Resample.c operation by operation. Products are wrapped in float64()
// conversions so that the compiler never fuses a multiply and an add into one FMA instruction (which
// rounds once instead of twice, as the C code compiled for x86-64 does).

func boxFilter(x float64) float64 {
	if x > -0.5 && x <= 0.5 {
		return 1.0
	}
	return 0.0
}

func bilinearFilter(x float64) float64 {
	if x < 0.0 {
		x = -x
	}
	if x < 1.0 {
		return 1.0 - x
	}
	return 0.0
}

func hammingFilter(x float64) float64 {
	if x < 0.0 {
		x = -x
	}
	if x == 0.0 {
		return 1.0
	}
	if x >= 1.0 {
		return 0.0
	}
	x = x * math.Pi
	// 0.54f and 0.46f are float literals in C, promoted to double.
	return math.Sin(x) / x * (float64(float32(0.54)) + float64(float64(float32(0.46))*math.Cos(x)))
}

func bicubicFilter(x float64) float64 {
	const a = -0.5
	if x < 0.0 {
		x = -x
	}
	if x < 1.0 {
		return float64(float64(float64(float64((a+2.0)*x)-(a+3.0))*x)*x) + 1
	}
	if x < 2.0 {
		return float64(float64(float64(float64(x-5)*x)+8)*x-4) * a
	}
	return 0.0
}

func sincFilter(x float64) float64 {
	if x == 0.0 {
		return 1.0
	}
	x = x * math.Pi
	return math.Sin(x) / x
}

func lanczosFilter(x float64) float64 {
	if -3.0 <= x && x < 3.0 {
		return sincFilter(x) * sincFilter(x/3)
	}
	return 0.0
}

// mks2013Filter and mks2021Filter are Magic Kernel Sharp (Pillow 13). pow(x, 2) is x*x (exact in
// both). Constant quotients are folded exactly once, like the C compiler does.
func mks2013Filter(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 0.5 {
		return 17.0/16.0 - float64(7.0/4.0*float64(x*x))
	}
	if x < 1.5 {
		return (1.0 - x) * (7.0/4.0 - x)
	}
	if x < 2.5 {
		d := x - 5.0/2.0
		return -1.0 / 8.0 * float64(d*d)
	}
	return 0
}

func mks2021Filter(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 0.5 {
		return 577.0/576.0 - float64(239.0/144.0*float64(x*x))
	}
	if x < 1.5 {
		return float64(35.0/36.0*(x-1.0)) * (x - 239.0/140.0)
	}
	if x < 2.5 {
		return float64(1.0/6.0*(x-2.0)) * (65.0/24.0 - x)
	}
	if x < 3.5 {
		return float64(1.0/36.0*(x-3.0)) * (x - 15.0/4.0)
	}
	if x < 4.5 {
		d := x - 9.0/2.0
		return -1.0 / 288.0 * float64(d*d)
	}
	return 0
}

// precisionBits is Resample.c's PRECISION_BITS: 8 bits for the result, 2 for overshoot, int32 sums.
const precisionBits = 32 - 8 - 2

// coeffs are the fixed-point weights of one axis for the output samples [first, first+len(start)):
// output sample first+i reads count[i] input samples starting at start[i], weighted by
// k[i*ksize : i*ksize+count[i]].
type coeffs struct {
	ksize int
	first int
	start []int
	count []int
	k     []int32
}

// computeCoeffs ports precompute_coeffs + normalize_coeffs_8bpc for the box [0, inSize), for the output
// samples [lo, hi) (each sample's weights depend only on its own index).
func computeCoeffs(inSize, outSize int, f Filter, lo, hi int) (*coeffs, error) {
	filter, fsupport, ok := f.kernel()
	if !ok {
		return nil, fmt.Errorf("imageproc: unsupported resampling filter %v", f)
	}
	if inSize <= 0 || outSize <= 0 {
		return nil, fmt.Errorf("imageproc: resample %d -> %d: sizes must be positive", inSize, outSize)
	}
	// in1 - in0 is a C float (float32) difference; exact for every size below 2^24.
	scale := float64(float32(inSize)) / float64(outSize)
	filterscale := scale
	if filterscale < 1.0 {
		filterscale = 1.0
	}
	support := fsupport * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	if lo < 0 || hi > outSize || lo >= hi || ksize > 1<<20 || (hi-lo) > math.MaxInt32/ksize {
		return nil, fmt.Errorf("imageproc: resample %d -> %d: bad coefficient range [%d, %d)", inSize, outSize, lo, hi)
	}
	c := &coeffs{
		ksize: ksize,
		first: lo,
		start: make([]int, hi-lo),
		count: make([]int, hi-lo),
		k:     make([]int32, (hi-lo)*ksize),
	}
	w := make([]float64, ksize)
	ss := 1.0 / filterscale
	for xx := lo; xx < hi; xx++ {
		center := float64(float64(xx)+0.5) * scale
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		if xmax > ksize { // cannot happen; keeps the slicing below safe
			xmax = ksize
		}
		ww := 0.0
		for x := 0; x < xmax; x++ {
			v := filter(float64(float64(float64(x+xmin)-center)+0.5) * ss)
			w[x] = v
			ww += v
		}
		k := c.k[(xx-lo)*ksize : (xx-lo)*ksize+ksize]
		for x := 0; x < xmax; x++ {
			v := w[x]
			if ww != 0.0 {
				v /= ww
			}
			// (int)(±0.5 + v * (1 << PRECISION_BITS)): truncation toward zero.
			if v < 0 {
				k[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				k[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		c.start[xx-lo] = xmin
		c.count[xx-lo] = xmax
	}
	return c, nil
}

type coeffKey struct {
	in, out int
	f       Filter
}

// coeffCache keeps the tables of recently used sizes (a batch usually repeats a handful of sizes).
var coeffCache struct {
	sync.Mutex
	m map[coeffKey]*coeffs
}

const coeffCacheMax = 64

// maxCachedOut bounds the output sizes whose full tables are cached; larger ones (extreme aspect
// ratios) only get the range a crop needs, uncached.
const maxCachedOut = 16384

// coeffsFor returns weights covering at least the output samples [lo, hi).
func coeffsFor(inSize, outSize int, f Filter, lo, hi int) (*coeffs, error) {
	if outSize > maxCachedOut {
		return computeCoeffs(inSize, outSize, f, lo, hi)
	}
	return cachedCoeffs(inSize, outSize, f)
}

func cachedCoeffs(inSize, outSize int, f Filter) (*coeffs, error) {
	key := coeffKey{inSize, outSize, f}
	coeffCache.Lock()
	c := coeffCache.m[key]
	coeffCache.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := computeCoeffs(inSize, outSize, f, 0, outSize)
	if err != nil {
		return nil, err
	}
	coeffCache.Lock()
	if coeffCache.m == nil || len(coeffCache.m) >= coeffCacheMax {
		coeffCache.m = make(map[coeffKey]*coeffs)
	}
	coeffCache.m[key] = c
	coeffCache.Unlock()
	return c, nil
}

// clip8 is Resample.c's clip8: the sum's integer part, saturated to 0..255.
func clip8(s int32) uint8 {
	s >>= precisionBits
	if s < 0 {
		return 0
	}
	if s > 255 {
		return 255
	}
	return uint8(s)
}

// Resize resamples src to width×height with Pillow's Image.resize(size, filter) arithmetic for 8-bit
// images (libImaging/Resample.c). Every filter except Nearest is supported. A size equal to the
// source's returns a copy.
func Resize(src *RGB, width, height int, f Filter) (*RGB, error) {
	if err := src.validate(); err != nil {
		return nil, err
	}
	if width <= 0 || height <= 0 {
		return nil, fmt.Errorf("imageproc: resize to %dx%d: %w", width, height, ErrEmptyImage)
	}
	if int64(width)*int64(height) > maxRGBPixels {
		return nil, fmt.Errorf("imageproc: resize to %dx%d: %w", width, height, ErrTooLarge)
	}
	dst := &RGB{Width: width, Height: height, Pix: make([]uint8, width*height*3)}
	if err := resizeRegion(src, width, height, f, 0, 0, dst, runtime.GOMAXPROCS(0)); err != nil {
		return nil, err
	}
	return dst, nil
}

// ResizeBicubic is Resize with the Bicubic filter (the CLIP preprocessing default).
func ResizeBicubic(src *RGB, width, height int) (*RGB, error) {
	return Resize(src, width, height, Bicubic)
}

// resizeRegion computes the part of the width×height resize of src whose top-left corner is (left, top)
// and whose size is dst's, into dst. Every output sample depends only on its own coefficients, so the
// region is identical to the same region of the full resize. The region must lie inside the output.
// workers bounds the goroutines used for large images.
//
// The pass order is Pillow 13's (ImagingResampleInner): horizontal first, unless the height shrinks
// by more than twice as many pixels as the width does; a pass whose size does not change is skipped.
// The order matters: the intermediate image is rounded to 8 bits.
func resizeRegion(src *RGB, width, height int, f Filter, left, top int, dst *RGB, workers int) error {
	if left < 0 || top < 0 || left+dst.Width > width || top+dst.Height > height {
		return fmt.Errorf("imageproc: resize region out of bounds")
	}
	needH := width != src.Width
	needV := height != src.Height
	if !needH && !needV {
		copyRegion(src, left, top, dst)
		return nil
	}
	var ch, cv *coeffs
	var err error
	if needH {
		if ch, err = coeffsFor(src.Width, width, f, left, left+dst.Width); err != nil {
			return err
		}
	}
	if needV {
		if cv, err = coeffsFor(src.Height, height, f, top, top+dst.Height); err != nil {
			return err
		}
	}
	dy := src.Height - height
	horizontalFirst := !(dy > 0 && dy > (src.Width-width)*2)
	switch {
	case !needV:
		horizontalPass(src, top, 0, ch, left, dst, workers)
	case !needH:
		verticalPass(src, 0, cv, top, left, dst, workers)
	case horizontalFirst:
		// The vertical pass needs input rows [yFirst, yLast) for output rows [top, top+dst.Height).
		first, last := top-cv.first, top+dst.Height-1-cv.first
		yFirst, yLast := cv.start[first], cv.start[last]+cv.count[last]
		inter := &RGB{Width: dst.Width, Height: yLast - yFirst}
		inter.Pix = make([]uint8, inter.Width*inter.Height*3)
		horizontalPass(src, yFirst, 0, ch, left, inter, workers)
		verticalPass(inter, yFirst, cv, top, 0, dst, workers)
	default:
		// The horizontal pass needs input columns [xFirst, xLast) for output columns
		// [left, left+dst.Width).
		first, last := left-ch.first, left+dst.Width-1-ch.first
		xFirst, xLast := ch.start[first], ch.start[last]+ch.count[last]
		inter := &RGB{Width: xLast - xFirst, Height: dst.Height}
		inter.Pix = make([]uint8, inter.Width*inter.Height*3)
		verticalPass(src, 0, cv, top, xFirst, inter, workers)
		horizontalPass(inter, 0, xFirst, ch, left, dst, workers)
	}
	return nil
}

func copyRegion(src *RGB, left, top int, dst *RGB) {
	for y := 0; y < dst.Height; y++ {
		o := ((top+y)*src.Width + left) * 3
		copy(dst.Pix[y*dst.Width*3:(y+1)*dst.Width*3], src.Pix[o:o+dst.Width*3])
	}
}

// parallelRows runs fn over [0, n) split into contiguous chunks, on up to workers goroutines when the
// work (n·cost sample operations) is large enough to be worth it.
func parallelRows(n, cost, workers int, fn func(lo, hi int)) {
	const minWork = 1 << 17
	if workers > n {
		workers = n
	}
	if w := n * cost / minWork; w < workers {
		workers = w
	}
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// horizontalPass fills dst (dst.Width output columns starting at column left of the full-width output)
// from rows [srcTop, srcTop+dst.Height) of src, whose column 0 is input column srcLeft.
func horizontalPass(src *RGB, srcTop, srcLeft int, c *coeffs, left int, dst *RGB, workers int) {
	ksize := c.ksize
	parallelRows(dst.Height, dst.Width*3*ksize, workers, func(lo, hi int) {
		for y := lo; y < hi; y++ {
			in := src.Pix[(srcTop+y)*src.Width*3 : (srcTop+y+1)*src.Width*3]
			out := dst.Pix[y*dst.Width*3 : (y+1)*dst.Width*3]
			for xx := 0; xx < dst.Width; xx++ {
				i := left + xx - c.first
				n := c.count[i]
				k := c.k[i*ksize : i*ksize+n]
				p := in[(c.start[i]-srcLeft)*3 : (c.start[i]-srcLeft+n)*3]
				s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
				// Two taps per step; int32 sums wrap, so the order of additions cannot matter.
				j := 0
				for ; j+1 < len(k); j += 2 {
					w0, w1 := k[j], k[j+1]
					q := p[j*3 : j*3+6 : j*3+6]
					s0 += int32(q[0])*w0 + int32(q[3])*w1
					s1 += int32(q[1])*w0 + int32(q[4])*w1
					s2 += int32(q[2])*w0 + int32(q[5])*w1
				}
				if j < len(k) {
					w := k[j]
					q := p[j*3 : j*3+3 : j*3+3]
					s0 += int32(q[0]) * w
					s1 += int32(q[1]) * w
					s2 += int32(q[2]) * w
				}
				o := out[xx*3 : xx*3+3 : xx*3+3]
				o[0] = clip8(s0)
				o[1] = clip8(s1)
				o[2] = clip8(s2)
			}
		}
	})
}

// verticalPass fills dst (output rows [top, top+dst.Height) of the full-height output, columns
// [left, left+dst.Width) of src) from src, whose row 0 is input row srcTop.
func verticalPass(src *RGB, srcTop int, c *coeffs, top, left int, dst *RGB, workers int) {
	ksize := c.ksize
	rowLen := dst.Width * 3
	parallelRows(dst.Height, rowLen*ksize, workers, func(lo, hi int) {
		// Integer sums wrap modulo 2^32 exactly like Pillow's int accumulators, so accumulating tap by
		// tap over a whole row gives the same result as Pillow's per-sample loop.
		acc := make([]int32, rowLen)
		for y := lo; y < hi; y++ {
			i := top + y - c.first
			n := c.count[i]
			k := c.k[i*ksize : i*ksize+n]
			for x := range acc {
				acc[x] = 1 << (precisionBits - 1)
			}
			row := func(j int) []uint8 {
				r := c.start[i] + j - srcTop
				return src.Pix[(r*src.Width+left)*3 : (r*src.Width+left)*3+rowLen]
			}
			j := 0
			for ; j+1 < len(k); j += 2 { // two taps per sweep
				w0, w1 := k[j], k[j+1]
				in0, in1 := row(j), row(j+1)
				in0, in1 = in0[:len(acc)], in1[:len(acc)]
				for x := range acc {
					acc[x] += int32(in0[x])*w0 + int32(in1[x])*w1
				}
			}
			if j < len(k) {
				w := k[j]
				in := row(j)[:len(acc)]
				for x, v := range in {
					acc[x] += int32(v) * w
				}
			}
			out := dst.Pix[y*rowLen : (y+1)*rowLen]
			out = out[:len(acc)]
			for x, s := range acc {
				out[x] = clip8(s)
			}
		}
	})
}
