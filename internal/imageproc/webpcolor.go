package imageproc

import "image"

// Lossy WebP stores BT.601 limited-range Y'CbCr 4:2:0. x/image/webp returns those planes (they are
// bit-exact: VP8 decoding is normative), but image/color would convert them with JFIF's full-range
// formulas. Pillow gets its pixels from libwebp, which upsamples the chroma with its "fancy"
// upsampler (a 9-3-3-1 bilinear kernel, dsp/upsampling.c) and converts with 14-bit fixed point
// (dsp/yuv.h). This file reproduces both.

// webpClip8 is VP8Clip8: a value with 6 fractional bits, saturated to 0..255.
func webpClip8(v int32) uint8 {
	const mask = (256 << 6) - 1
	if v&^mask == 0 {
		return uint8(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}

// webpYUVToRGB is VP8YuvToRgb (MultHi(v, c) = (v·c) >> 8).
func webpYUVToRGB(y, u, v uint8) (uint8, uint8, uint8) {
	yy := int32(y) * 19077 >> 8
	r := webpClip8(yy + int32(v)*26149>>8 - 14234)
	g := webpClip8(yy - int32(u)*6419>>8 - int32(v)*13320>>8 + 8708)
	b := webpClip8(yy + int32(u)*33050>>8 - 17685)
	return r, g, b
}

// webpUpsampleRow computes one full-width row of one chroma plane from its nearer chroma row n and
// the other row f, with libwebp's fancy upsampler (UPSAMPLE_FUNC; its packed u|v arithmetic is
// equivalent to doing each plane separately).
func webpUpsampleRow(n, f []uint8, out []uint8) {
	w := len(out)
	out[0] = uint8((3*int32(n[0]) + int32(f[0]) + 2) >> 2)
	last := (w - 1) >> 1
	for x := 1; x <= last; x++ {
		n0, n1, f0, f1 := int32(n[x-1]), int32(n[x]), int32(f[x-1]), int32(f[x])
		avg := n0 + n1 + f0 + f1 + 8
		d1 := (avg + 2*(n1+f0)) >> 3
		d2 := (avg + 2*(n0+f1)) >> 3
		out[2*x-1] = uint8((d1 + n0) >> 1)
		out[2*x] = uint8((d2 + n1) >> 1)
	}
	if w&1 == 0 {
		out[w-1] = uint8((3*int32(n[last]) + int32(f[last]) + 2) >> 2)
	}
}

// webpToRGB converts the planes of a lossy WebP into dst (same size) as libwebp does for Pillow. Any
// layout other than 4:2:0 starting at (0, 0) uses ycbcrToRGB.
func webpToRGB(m *image.YCbCr, dst *RGB) {
	b := m.Rect
	if m.SubsampleRatio != image.YCbCrSubsampleRatio420 || b.Min.X != 0 || b.Min.Y != 0 {
		ycbcrToRGB(m, dst)
		return
	}
	w, h := b.Dx(), b.Dy()
	cw, ch := (w+1)/2, (h+1)/2
	row := func(p []uint8, i int) []uint8 {
		i = max(0, min(i, ch-1))
		return p[i*m.CStride : i*m.CStride+cw]
	}
	u, v := make([]uint8, w), make([]uint8, w)
	for y := 0; y < h; y++ {
		// Row 0 uses chroma row 0 alone; then rows 2k-1 (nearer to chroma row k-1) and 2k (nearer
		// to row k) pair chroma rows k-1 and k; past the last chroma row it repeats.
		near, far := 0, 0
		if y > 0 {
			a := (y - 1) / 2
			near, far = a, a+1
			if y%2 == 0 {
				near, far = a+1, a
			}
		}
		webpUpsampleRow(row(m.Cb, near), row(m.Cb, far), u)
		webpUpsampleRow(row(m.Cr, near), row(m.Cr, far), v)
		yr := m.Y[y*m.YStride : y*m.YStride+w]
		o := dst.Pix[y*w*3 : (y+1)*w*3]
		for x, yy := range yr {
			o[3*x], o[3*x+1], o[3*x+2] = webpYUVToRGB(yy, u[x], v[x])
		}
	}
}
