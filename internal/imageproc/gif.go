package imageproc

import (
	"image"
	"image/color"
)

// gifCanvas turns the first frame decoded by image/gif into what Pillow shows for frame 0: the frame
// pasted on a canvas of the logical screen size, filled with the frame's transparent index (or index
// 0 when it has none), and with the real colour of the transparent palette entry (image/gif replaces
// it with transparent black, Pillow's convert("RGB") uses the colour stored in the file).
func gifCanvas(data []byte, frame *image.Paletted, cfg image.Config) *image.Paletted {
	pal, trans := gifFirstFramePalette(data)
	palette := append(color.Palette(nil), frame.Palette...)
	if trans >= 0 && trans < len(palette) && 3*trans+2 < len(pal) {
		palette[trans] = color.NRGBA{pal[3*trans], pal[3*trans+1], pal[3*trans+2], 0}
	}
	fill := uint8(0)
	if trans >= 0 {
		fill = uint8(trans)
	}
	canvas := image.NewPaletted(image.Rect(0, 0, cfg.Width, cfg.Height), palette)
	if fill != 0 {
		for i := range canvas.Pix {
			canvas.Pix[i] = fill
		}
	}
	r := frame.Rect.Intersect(canvas.Rect)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		copy(canvas.Pix[canvas.PixOffset(r.Min.X, y):canvas.PixOffset(r.Max.X, y)],
			frame.Pix[frame.PixOffset(r.Min.X, y):frame.PixOffset(r.Max.X, y)])
	}
	return canvas
}

// gifFirstFramePalette walks the GIF block structure up to the first image descriptor and returns
// that frame's colour table (local, else global) as RGB triplets and its transparent index (-1 when
// none). A malformed stream returns what was found so far.
func gifFirstFramePalette(d []byte) (pal []byte, trans int) {
	trans = -1
	if len(d) < 13 {
		return nil, trans
	}
	p := 13
	if flags := d[10]; flags&0x80 != 0 {
		n := 3 << (int(flags&7) + 1)
		if p+n > len(d) {
			return nil, trans
		}
		pal = d[p : p+n]
		p += n
	}
	for p < len(d) {
		switch d[p] {
		case 0x21: // extension
			if p+1 >= len(d) {
				return pal, trans
			}
			label := d[p+1]
			p += 2
			if label == 0xf9 && p+5 < len(d) && d[p] == 4 {
				if d[p+1]&1 != 0 {
					trans = int(d[p+4])
				} else {
					trans = -1
				}
			}
			for p < len(d) && d[p] != 0 { // sub-blocks
				p += int(d[p]) + 1
			}
			p++
		case 0x2c: // image descriptor
			if p+10 > len(d) {
				return pal, trans
			}
			if flags := d[p+9]; flags&0x80 != 0 {
				n := 3 << (int(flags&7) + 1)
				if p+10+n <= len(d) {
					pal = d[p+10 : p+10+n]
				}
			}
			return pal, trans
		default: // trailer or garbage
			return pal, trans
		}
	}
	return pal, trans
}
