package imageproc

import (
	"image"
	"image/color"
)

// plane is one decoded component: samples at pix[y*stride+x] for x < w, y < h (libjpeg's
// downsampled_width / downsampled_height).
type plane struct {
	pix    []uint8
	stride int
	w, h   int
}

func (p plane) row(y int) []uint8 {
	y = max(0, min(y, p.h-1)) // context rows past the edges repeat the edge row, as in libjpeg
	return p.pix[y*p.stride : y*p.stride+p.w]
}

// upsampleRow writes row y of component p expanded by (hexp, vexp) to the full image width into out,
// with libjpeg's jdsample.c choice of method (do_fancy_upsampling on, Pillow's setting):
// h2v1_fancy_upsample for 2×1 and h2v2_fancy_upsample for 2×2 when the component is more than 2
// samples wide (else replication), h1v2_fancy_upsample for 1×2, replication (int_upsample) for the
// other integral ratios. sums is scratch space of at least p.w values.
func upsampleRow(p plane, hexp, vexp, y int, out []uint8, sums []int32) {
	cy := y / vexp
	switch {
	case hexp == 1 && vexp == 1:
		copy(out, p.row(y))
	case hexp == 2 && vexp == 1 && p.w > 2:
		fancyH2(p.row(cy), out)
	case hexp == 1 && vexp == 2:
		near, far := p.row(cy), p.row(cy-1+2*(y%2))
		for i := range out {
			out[i] = uint8((int32(near[i])*3 + int32(far[i]) + 1) >> 2)
		}
	case hexp == 2 && vexp == 2 && p.w > 2:
		near, far := p.row(cy), p.row(cy-1+2*(y%2))
		s := sums[:p.w]
		for i := range s {
			s[i] = int32(near[i])*3 + int32(far[i])
		}
		fancyH2V2(s, out)
	default:
		in := p.row(cy)
		for i := range out {
			out[i] = in[i/hexp]
		}
	}
}

// fancyH2 is h2v1_fancy_upsample for one row (len(in) > 2). out has the image width, which may be one
// less than 2·len(in).
func fancyH2(in []uint8, out []uint8) {
	n := len(in)
	put := func(i int, v int32) {
		if i < len(out) {
			out[i] = uint8(v)
		}
	}
	put(0, int32(in[0]))
	put(1, (int32(in[0])*3+int32(in[1])+2)>>2)
	for i := 1; i < n-1; i++ {
		v := int32(in[i]) * 3
		put(2*i, (v+int32(in[i-1])+1)>>2)
		put(2*i+1, (v+int32(in[i+1])+2)>>2)
	}
	put(2*(n-1), (int32(in[n-1])*3+int32(in[n-2])+1)>>2)
	put(2*(n-1)+1, int32(in[n-1]))
}

// fancyH2V2 is the horizontal half of h2v2_fancy_upsample on column sums 3·near + far.
func fancyH2V2(sum []int32, out []uint8) {
	n := len(sum)
	put := func(i int, v int32) {
		if i < len(out) {
			out[i] = uint8(v)
		}
	}
	put(0, (sum[0]*4+8)>>4)
	put(1, (sum[0]*3+sum[1]+7)>>4)
	for i := 1; i < n-1; i++ {
		put(2*i, (sum[i]*3+sum[i-1]+8)>>4)
		put(2*i+1, (sum[i]*3+sum[i+1]+7)>>4)
	}
	put(2*(n-1), (sum[n-1]*3+sum[n-2]+8)>>4)
	put(2*(n-1)+1, (sum[n-1]*4+7)>>4)
}

// libjpeg's colour conversion tables (jdcolor.c, build_ycc_rgb_table): 16-bit fixed point.
var jpegTables = func() (t struct{ crR, cbB, crG, cbG [256]int32 }) {
	const scaleBits = 16
	const half = 1 << (scaleBits - 1)
	fix := func(x float64) int32 { return int32(x*(1<<scaleBits) + 0.5) }
	for i := 0; i < 256; i++ {
		x := int32(i - 128)
		t.crR[i] = (fix(1.40200)*x + half) >> scaleBits
		t.cbB[i] = (fix(1.77200)*x + half) >> scaleBits
		t.crG[i] = -fix(0.71414) * x
		t.cbG[i] = -fix(0.34414)*x + half
	}
	return t
}()

func clampByte(v int32) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// yccToRGB is libjpeg's ycc_rgb_convert for one pixel.
func yccToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	t := &jpegTables
	Y := int32(y)
	return clampByte(Y + t.crR[cr]), clampByte(Y + (t.cbG[cb]+t.crG[cr])>>16), clampByte(Y + t.cbB[cb])
}

// ycbcrToRGB converts an image.YCbCr into dst (same size) like libjpeg would have decoded the JPEG it
// comes from: fancy chroma upsampling and libjpeg's colour tables. A sub-image that does not start at
// (0, 0), or an unknown subsampling ratio, falls back to image/color's conversion.
func ycbcrToRGB(m *image.YCbCr, dst *RGB) {
	b := m.Rect
	w, h := b.Dx(), b.Dy()
	var hexp, vexp int
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
		hexp, vexp = 1, 1
	case image.YCbCrSubsampleRatio422:
		hexp, vexp = 2, 1
	case image.YCbCrSubsampleRatio420:
		hexp, vexp = 2, 2
	case image.YCbCrSubsampleRatio440:
		hexp, vexp = 1, 2
	case image.YCbCrSubsampleRatio411:
		hexp, vexp = 4, 1
	case image.YCbCrSubsampleRatio410:
		hexp, vexp = 4, 2
	}
	if hexp == 0 || b.Min.X != 0 || b.Min.Y != 0 {
		for y := 0; y < h; y++ {
			o := dst.Pix[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				yi := m.YOffset(b.Min.X+x, b.Min.Y+y)
				ci := m.COffset(b.Min.X+x, b.Min.Y+y)
				o[3*x], o[3*x+1], o[3*x+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
			}
		}
		return
	}
	cw, ch := (w+hexp-1)/hexp, (h+vexp-1)/vexp
	cb := plane{m.Cb, m.CStride, cw, ch}
	cr := plane{m.Cr, m.CStride, cw, ch}
	cbRow, crRow := make([]uint8, w), make([]uint8, w)
	sums := make([]int32, cw)
	for y := 0; y < h; y++ {
		upsampleRow(cb, hexp, vexp, y, cbRow, sums)
		upsampleRow(cr, hexp, vexp, y, crRow, sums)
		yRow := m.Y[y*m.YStride : y*m.YStride+w]
		o := dst.Pix[y*w*3 : (y+1)*w*3]
		for x, yy := range yRow {
			o[3*x], o[3*x+1], o[3*x+2] = yccToRGB(yy, cbRow[x], crRow[x])
		}
	}
}
