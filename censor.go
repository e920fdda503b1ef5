package safety

import (
	"image"
	"image/color"
	"image/draw"
	"math"
)

// Censoring helpers for images that a check flagged. They are pure Go, do not use the model, and
// are safe to call concurrently. Each returns a new *image.NRGBA with the same bounds as img (the
// same size and origin) and leaves img untouched; a nil img gives nil.

// CensorBlack returns an opaque black image the size of img: every pixel (0, 0, 0, 255). It is what
// diffusers' pipelines return for a flagged image (the safety checker zeroes it; the pipeline's
// output is then all black).
func CensorBlack(img image.Image) *image.NRGBA {
	if img == nil {
		return nil
	}
	out := image.NewNRGBA(img.Bounds())
	for i := 3; i < len(out.Pix); i += 4 {
		out.Pix[i] = 0xff
	}
	return out
}

// CensorBlur returns img blurred with three passes of a box blur of the given radius (box width
// 2·radius + 1) horizontally and vertically: a close approximation of a Gaussian of standard
// deviation about radius, with edges extended. A radius ≤ 0 picks one that hides content whatever
// the image size: max(width, height)/20 (at least 4). Colours are averaged with premultiplied
// alpha, so transparent pixels do not bleed their hidden colour.
func CensorBlur(img image.Image, radius int) *image.NRGBA {
	if img == nil {
		return nil
	}
	src := toRGBA(img)
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	out := image.NewNRGBA(b)
	if w == 0 || h == 0 {
		return out
	}
	if radius <= 0 {
		radius = max(4, max(w, h)/20)
	}
	// Planar float copies of the premultiplied channels.
	var planes [4][]float32
	for c := range planes {
		planes[c] = make([]float32, w*h)
	}
	for y := range h {
		row := src.Pix[y*src.Stride : y*src.Stride+4*w]
		for x := range w {
			for c := range 4 {
				planes[c][y*w+x] = float32(row[4*x+c])
			}
		}
	}
	line := make([]float32, max(w, h))
	prefix := make([]float64, max(w, h)+1)
	for c := range planes {
		p := planes[c]
		for range 3 {
			for y := range h { // horizontal
				boxBlurLine(p[y*w:(y+1)*w], 1, w, radius, line, prefix)
			}
			for x := range w { // vertical
				boxBlurLine(p[x:], w, h, radius, line, prefix)
			}
		}
	}
	for y := range h {
		for x := range w {
			i := y*w + x
			rgba := color.RGBA{R: clamp8(planes[0][i]), G: clamp8(planes[1][i]), B: clamp8(planes[2][i]), A: clamp8(planes[3][i])}
			rgba.R, rgba.G, rgba.B = min(rgba.R, rgba.A), min(rgba.G, rgba.A), min(rgba.B, rgba.A)
			n := color.NRGBAModel.Convert(rgba).(color.NRGBA)
			o := y*out.Stride + 4*x
			out.Pix[o], out.Pix[o+1], out.Pix[o+2], out.Pix[o+3] = n.R, n.G, n.B, n.A
		}
	}
	return out
}

// boxBlurLine replaces the n values p[0], p[stride], … p[(n−1)·stride] by their mean over a window
// of 2r+1 values, the line extended with its end values. line and prefix are scratch space of at
// least n and n+1 values.
func boxBlurLine(p []float32, stride, n, r int, line []float32, prefix []float64) {
	for i := range n {
		line[i] = p[i*stride]
	}
	prefix[0] = 0
	for i := range n {
		prefix[i+1] = prefix[i] + float64(line[i])
	}
	first, last := float64(line[0]), float64(line[n-1])
	width := float64(2*r + 1)
	for i := range n {
		lo, hi := i-r, i+r
		sum := prefix[min(hi, n-1)+1] - prefix[max(lo, 0)]
		if lo < 0 {
			sum += float64(-lo) * first
		}
		if hi > n-1 {
			sum += float64(hi-(n-1)) * last
		}
		p[i*stride] = float32(sum / width)
	}
}

// CensorPixelate returns img pixelated: the image is divided into block×block squares from its
// top-left corner (smaller ones at the right and bottom edges), and each square is filled with the
// mean colour of its pixels (averaged with premultiplied alpha). A block ≤ 0 picks one that hides
// content whatever the image size: max(width, height)/16 (at least 8).
func CensorPixelate(img image.Image, block int) *image.NRGBA {
	if img == nil {
		return nil
	}
	src := toRGBA(img)
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	out := image.NewNRGBA(b)
	if block <= 0 {
		block = max(8, max(w, h)/16)
	}
	for by := 0; by < h; by += block {
		for bx := 0; bx < w; bx += block {
			x1, y1 := min(bx+block, w), min(by+block, h)
			var sum [4]uint64
			for y := by; y < y1; y++ {
				row := src.Pix[y*src.Stride:]
				for x := bx; x < x1; x++ {
					for c := range 4 {
						sum[c] += uint64(row[4*x+c])
					}
				}
			}
			n := uint64((x1 - bx) * (y1 - by))
			var mean [4]uint8
			for c := range 4 {
				mean[c] = uint8((sum[c] + n/2) / n)
			}
			rgba := color.RGBA{R: min(mean[0], mean[3]), G: min(mean[1], mean[3]), B: min(mean[2], mean[3]), A: mean[3]}
			nc := color.NRGBAModel.Convert(rgba).(color.NRGBA)
			for y := by; y < y1; y++ {
				row := out.Pix[y*out.Stride:]
				for x := bx; x < x1; x++ {
					row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = nc.R, nc.G, nc.B, nc.A
				}
			}
		}
	}
	return out
}

// toRGBA returns img as an 8-bit premultiplied *image.RGBA whose Pix starts at img's top-left
// pixel (Pix index 0 = img.Bounds().Min), with the same bounds.
func toRGBA(img image.Image) *image.RGBA {
	b := img.Bounds()
	if m, ok := img.(*image.RGBA); ok {
		return m.SubImage(b).(*image.RGBA)
	}
	m := image.NewRGBA(b)
	draw.Draw(m, b, img, b.Min, draw.Src)
	return m
}

// clamp8 rounds v to the nearest 8-bit value.
func clamp8(v float32) uint8 {
	return uint8(math.Min(math.Max(math.Round(float64(v)), 0), 255))
}
