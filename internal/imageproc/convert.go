package imageproc

import (
	"fmt"
	"image"
	"image/color"
)

// RGB is a packed 8-bit RGB image: Pix holds Height rows of Width pixels, 3 bytes (R, G, B) each,
// row-major with no padding, so len(Pix) == Width*Height*3. It is what Pillow holds after
// convert("RGB").
type RGB struct {
	Width, Height int
	Pix           []uint8
}

// maxRGBPixels bounds any image this package allocates (3 GiB of samples), whatever the options say.
const maxRGBPixels = 1 << 30

// NewRGB allocates a black width×height image.
func NewRGB(width, height int) (*RGB, error) {
	if width <= 0 || height <= 0 {
		return nil, fmt.Errorf("imageproc: new %dx%d image: %w", width, height, ErrEmptyImage)
	}
	if int64(width)*int64(height) > maxRGBPixels {
		return nil, fmt.Errorf("imageproc: new %dx%d image: %w", width, height, ErrTooLarge)
	}
	return &RGB{Width: width, Height: height, Pix: make([]uint8, width*height*3)}, nil
}

func (m *RGB) validate() error {
	if m == nil {
		return fmt.Errorf("imageproc: nil image: %w", ErrEmptyImage)
	}
	if m.Width <= 0 || m.Height <= 0 {
		return fmt.Errorf("imageproc: %dx%d image: %w", m.Width, m.Height, ErrEmptyImage)
	}
	if int64(m.Width)*int64(m.Height) > maxRGBPixels {
		return fmt.Errorf("imageproc: %dx%d image: %w", m.Width, m.Height, ErrTooLarge)
	}
	if len(m.Pix) != m.Width*m.Height*3 {
		return fmt.Errorf("imageproc: %dx%d RGB image has %d bytes, want %d", m.Width, m.Height, len(m.Pix), m.Width*m.Height*3)
	}
	return nil
}

// ToImage returns the image as an *image.NRGBA (opaque), e.g. for encoding it.
func (m *RGB) ToImage() *image.NRGBA {
	out := image.NewNRGBA(image.Rect(0, 0, m.Width, m.Height))
	for i, j := 0, 0; i+2 < len(m.Pix) && j+3 < len(out.Pix); i, j = i+3, j+4 {
		out.Pix[j], out.Pix[j+1], out.Pix[j+2], out.Pix[j+3] = m.Pix[i], m.Pix[i+1], m.Pix[i+2], 0xff
	}
	return out
}

// FromImage converts any image.Image to packed RGB with the semantics of Pillow's convert("RGB") on
// the image Pillow would have opened:
//
//   - *image.NRGBA, *image.NRGBA64: the stored (un-premultiplied) colour, alpha dropped without
//     compositing; 16-bit samples keep their high byte (Pillow's "RGB;16B"/"RGBA;16B" unpacking).
//   - *image.RGBA, *image.RGBA64 (premultiplied): un-premultiplied first like Pillow's "RGBa" unpacker
//     (c·255/a, truncated; black where a == 0), then alpha dropped. Opaque images are copied.
//   - *image.Gray: replicated. *image.Gray16: Pillow opens 16-bit greyscale as mode "I;16", whose
//     conversion to RGB saturates: min(v, 255) (not the high byte).
//   - *image.Paletted: palette lookup, alpha of palette entries ignored; an index outside the palette
//     gives black.
//   - *image.CMYK: Pillow's cmyk2rgb: nk = 255−K; c' = nk − C·nk/255 (rounded like MULDIV255).
//   - *image.YCbCr, *image.NYCbCrA: as libjpeg converts JPEGs for Pillow: fancy (triangle) chroma
//     upsampling, libjpeg's fixed-point YCbCr→RGB; alpha dropped.
//   - anything else: color.NRGBA64Model, high bytes.
//
// The result always starts at (0, 0) whatever img.Bounds().Min is.
func FromImage(img image.Image) (*RGB, error) {
	if img == nil {
		return nil, fmt.Errorf("imageproc: nil image: %w", ErrEmptyImage)
	}
	b := img.Bounds()
	dst, err := NewRGB(b.Dx(), b.Dy())
	if err != nil {
		return nil, err
	}
	w, h := b.Dx(), b.Dy()
	out := dst.Pix
	switch m := img.(type) {
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = row[4*x], row[4*x+1], row[4*x+2]
			}
		}
	case *image.NRGBA64:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = row[8*x], row[8*x+2], row[8*x+4]
			}
		}
	case *image.RGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = unpremultiply8(row[4*x], row[4*x+1], row[4*x+2], row[4*x+3])
			}
		}
	case *image.RGBA64:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = unpremultiply8(row[8*x], row[8*x+2], row[8*x+4], row[8*x+6])
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				v := row[x]
				o[3*x], o[3*x+1], o[3*x+2] = v, v, v
			}
		}
	case *image.Gray16:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				v := row[2*x+1]
				if row[2*x] != 0 {
					v = 255
				}
				o[3*x], o[3*x+1], o[3*x+2] = v, v, v
			}
		}
	case *image.Paletted:
		var lut [256][3]uint8
		for i, c := range m.Palette {
			if i >= len(lut) {
				break
			}
			lut[i] = paletteRGB(c)
		}
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				c := &lut[row[x]]
				o[3*x], o[3*x+1], o[3*x+2] = c[0], c[1], c[2]
			}
		}
	case *image.CMYK:
		for y := 0; y < h; y++ {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = cmykToRGB(row[4*x], row[4*x+1], row[4*x+2], row[4*x+3])
			}
		}
	case *image.YCbCr:
		ycbcrToRGB(m, dst)
	case *image.NYCbCrA:
		ycbcrToRGB(&m.YCbCr, dst)
	default:
		for y := 0; y < h; y++ {
			o := out[y*w*3 : (y+1)*w*3]
			for x := 0; x < w; x++ {
				c := color.NRGBA64Model.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
				o[3*x], o[3*x+1], o[3*x+2] = uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8)
			}
		}
	}
	return dst, nil
}

// paletteRGB returns the colour of a palette entry without its alpha. image/png stores opaque entries
// as color.RGBA and translucent ones as color.NRGBA, both holding the file's bytes.
func paletteRGB(c color.Color) [3]uint8 {
	switch c := c.(type) {
	case color.NRGBA:
		return [3]uint8{c.R, c.G, c.B}
	case color.RGBA:
		r, g, b := unpremultiply8(c.R, c.G, c.B, c.A)
		return [3]uint8{r, g, b}
	case color.Gray:
		return [3]uint8{c.Y, c.Y, c.Y}
	case nil:
		return [3]uint8{}
	}
	n := color.NRGBA64Model.Convert(c).(color.NRGBA64)
	return [3]uint8{uint8(n.R >> 8), uint8(n.G >> 8), uint8(n.B >> 8)}
}

// unpremultiply8 follows Pillow's unpackRGBa: c·255/a truncated and saturated, black when a == 0.
func unpremultiply8(r, g, b, a uint8) (uint8, uint8, uint8) {
	switch a {
	case 255:
		return r, g, b
	case 0:
		return 0, 0, 0
	}
	f := func(c uint8) uint8 {
		v := int(c) * 255 / int(a)
		if v > 255 {
			v = 255
		}
		return uint8(v)
	}
	return f(r), f(g), f(b)
}

// cmykToRGB is Pillow's cmyk2rgb (Convert.c) with MULDIV255(a, b) = ((a·b+128)>>8 + a·b+128)>>8.
func cmykToRGB(c, m, y, k uint8) (uint8, uint8, uint8) {
	nk := 255 - int(k)
	f := func(v uint8) uint8 {
		t := int(v)*nk + 128
		r := nk - ((t>>8)+t)>>8
		if r < 0 {
			r = 0
		}
		return uint8(r)
	}
	return f(c), f(m), f(y)
}
