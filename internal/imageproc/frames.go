package imageproc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"io"
)

// DefaultMaxFrames is the default DecodeOptions.MaxFrames: DecodeFrames refuses an input with more
// frames than this before decoding any of them.
const DefaultMaxFrames = 1000

// FrameWorkFactor bounds the work of DecodeFrames: every frame is a whole canvas, so frames × canvas
// pixels may be at most FrameWorkFactor × MaxPixels (10^9 at the default 100 megapixels); a tiny file
// with a huge screen and many 1×1 frames is refused before decoding.
const FrameWorkFactor = 10

// ErrAnimatedPNG: DecodeFrames was given an animated PNG (APNG). Only its default image can be
// decoded (image/png does not read fcTL/fdAT frames); Decode returns that image, as the reference's
// Image.open does.
var ErrAnimatedPNG = errors.New("animated PNG (APNG): only the default image can be checked, its other frames cannot be decoded")

func (o *DecodeOptions) maxFrames() int {
	if o == nil || o.MaxFrames <= 0 {
		return DefaultMaxFrames
	}
	return o.MaxFrames
}

// DecodeFrames decodes every frame of data as a viewer shows it and calls fn with each, in order;
// it returns the number of frames decoded. A GIF gives each frame composited on its logical screen
// (see gifFrames for the rules: Pillow 13's im.seek(i); im.convert("RGB")); every other format gives
// one frame, the image Decode returns (a multi-page TIFF: the first page). An animated PNG is refused
// with ErrAnimatedPNG. The frame count is read from the GIF's block structure and refused with
// ErrTooLarge when it is more than opts.MaxFrames, and the logical screen is checked against
// opts.MaxPixels and frames × screen pixels against FrameWorkFactor × MaxPixels, before any frame is
// decoded. One canvas and one frame are held at a time, so memory is bounded by the canvas. An error
// from fn stops the walk and is returned as is, with the number of frames fn accepted before it; a
// decode error names the frame. fn owns the *RGB it is given.
func DecodeFrames(data []byte, opts *DecodeOptions, fn func(index int, img *RGB) error) (int, error) {
	if fn == nil {
		return 0, errors.New("imageproc: decode frames: nil callback")
	}
	switch Sniff(data) {
	case FormatGIF:
		return gifFrames(data, opts, fn)
	case FormatPNG:
		if isAPNG(data) {
			return 0, fmt.Errorf("imageproc: decode frames: %w", ErrAnimatedPNG)
		}
	}
	img, err := Decode(data, opts)
	if err != nil {
		return 0, err
	}
	if err := fn(0, img); err != nil {
		return 0, err
	}
	return 1, nil
}

// isAPNG reports whether a PNG stream has an acTL chunk before its first IDAT (what makes it an APNG).
func isAPNG(d []byte) bool {
	p := 8
	for p+8 <= len(d) {
		n := int(binary.BigEndian.Uint32(d[p:]))
		typ := string(d[p+4 : p+8])
		switch typ {
		case "acTL":
			return true
		case "IDAT", "IEND":
			return false
		}
		if n < 0 || n > len(d)-p-12 {
			return false
		}
		p += 12 + n
	}
	return false
}

// gifFrame is one image of a GIF stream, as its block structure describes it.
type gifFrame struct {
	rect     image.Rectangle // on the logical screen (may extend past it; image/gif refuses that)
	pal      []byte          // colour table, RGB triplets: local, else global (nil: none)
	trans    int             // transparent index from the frame's graphic control extension, or -1
	disposal int             // disposal bits of that extension, 0 when none
	gce      bool            // the frame has a graphic control extension
	start    int             // offset of the image descriptor (0x2c)
	end      int             // offset just after the frame's data sub-blocks
}

// gifScan walks a GIF's blocks and lists its frames, stopping with an error once there are more than
// maxFrames. A stream that ends inside an image descriptor, its colour table or its data is an error
// wrapping io.ErrUnexpectedEOF naming the frame (Pillow: "image file is truncated"); one that ends
// between blocks, without a trailer, ends the list.
func gifScan(d []byte, maxFrames int) (frames []gifFrame, global []byte, err error) {
	if len(d) < 13 {
		return nil, nil, errors.New("gif: truncated header")
	}
	p := 13
	if flags := d[10]; flags&0x80 != 0 {
		n := 3 << (int(flags&7) + 1)
		if p+n > len(d) {
			return nil, nil, errors.New("gif: truncated global colour table")
		}
		global = d[p : p+n]
		p += n
	}
	cur := gifFrame{trans: -1}
	skip := func(p int) int { // past a run of sub-blocks and its terminator
		for p < len(d) && d[p] != 0 {
			p += int(d[p]) + 1
		}
		return p + 1
	}
	for p < len(d) {
		switch d[p] {
		case 0x21:
			if p+1 >= len(d) {
				return frames, global, nil
			}
			if d[p+1] == 0xf9 && p+7 < len(d) && d[p+2] == 4 {
				// As Pillow reads a second extension before the same image: a zero disposal and
				// an unset transparency flag leave what an earlier one said.
				cur.gce = true
				if dis := int(d[p+3]>>2) & 7; dis != 0 {
					cur.disposal = dis
				}
				if d[p+3]&1 != 0 {
					cur.trans = int(d[p+6])
				}
			}
			p = skip(p + 2)
		case 0x2c:
			truncated := fmt.Errorf("gif: frame %d is cut short: %w", len(frames), io.ErrUnexpectedEOF)
			if p+10 > len(d) {
				return nil, nil, truncated
			}
			f := cur
			f.start = p
			x, y := int(binary.LittleEndian.Uint16(d[p+1:])), int(binary.LittleEndian.Uint16(d[p+3:]))
			w, h := int(binary.LittleEndian.Uint16(d[p+5:])), int(binary.LittleEndian.Uint16(d[p+7:]))
			f.rect = image.Rect(x, y, x+w, y+h)
			f.pal = global
			q := p + 10
			if flags := d[p+9]; flags&0x80 != 0 {
				n := 3 << (int(flags&7) + 1)
				if q+n > len(d) {
					return nil, nil, truncated
				}
				f.pal = d[q : q+n]
				q += n
			}
			q = skip(q + 1) // LZW minimum code size, then the data sub-blocks
			if q > len(d) {
				return nil, nil, truncated
			}
			f.end = q
			if len(frames) == maxFrames {
				return nil, nil, fmt.Errorf("more than %d frames: %w", maxFrames, ErrTooLarge)
			}
			frames = append(frames, f)
			cur = gifFrame{trans: -1}
			p = q
		default: // trailer or garbage: image/gif stops there too
			return frames, global, nil
		}
	}
	return frames, global, nil
}

// decodeGIFFrame decodes one frame of a GIF with image/gif by handing it a stream of the header, the
// global colour table and that frame alone, without its graphic control extension, so that the
// palette keeps the transparent entry's real colour; transparency is applied by the caller.
func decodeGIFFrame(d []byte, global []byte, f gifFrame) (*image.Paletted, error) {
	var b bytes.Buffer
	b.Grow(13 + len(global) + f.end - f.start + 1)
	b.Write(d[:13])
	b.Write(global)
	b.Write(d[f.start:f.end])
	b.WriteByte(0x3b)
	img, err := guard(FormatGIF, func() (image.Image, error) { return gif.Decode(&b) })
	if err != nil {
		return nil, err
	}
	m, ok := img.(*image.Paletted)
	if !ok {
		return nil, fmt.Errorf("gif: decoder returned %T", img)
	}
	return m, nil
}

// gifFrames composites every frame of a GIF on its logical screen and calls fn with each. It follows
// Pillow 13's GifImagePlugin (the yardstick: im.seek(i); im.convert("RGB")), including where Pillow
// departs from the GIF89a spec:
//   - Frame 0 is the frame pasted whole (its transparent pixels included, with the transparent
//     entry's stored colour) on a screen filled with its transparent index, else index 0.
//   - Frame i ≥ 1 is pasted over the canvas left by frame i−1 and its disposal; its transparent
//     pixels keep the canvas.
//   - The disposal method is sticky: a frame whose extension says 0 (unspecified) or that has no
//     extension keeps the previous frame's method (Pillow's choice; the spec says "no action").
//   - Disposal 2 (background) fills the frame's rectangle with the colour of the frame's own
//     transparent index, else of the screen's background index, looked up in the frame's colour
//     table (not transparent and not necessarily the global table: Pillow converts to RGB).
//   - Disposal 3 (previous) restores the rectangle as it was before the frame was drawn; on frame 0
//     it fills with the transparent colour when the frame has one and does nothing otherwise.
//
// A frame extending past the logical screen is refused (image/gif's rule; Pillow grows the canvas).
func gifFrames(d []byte, opts *DecodeOptions, fn func(int, *RGB) error) (int, error) {
	cfg, err := guard(FormatGIF, func() (image.Config, error) { return gif.DecodeConfig(bytes.NewReader(d)) })
	if err != nil {
		return 0, fmt.Errorf("imageproc: decode gif header: %w", err)
	}
	w, h := cfg.Width, cfg.Height
	if w <= 0 || h <= 0 {
		return 0, fmt.Errorf("imageproc: decode gif: %dx%d image: %w", w, h, ErrEmptyImage)
	}
	if limit := opts.maxPixels(); int64(w)*int64(h) > limit {
		return 0, fmt.Errorf("imageproc: decode gif: %dx%d is more than %d pixels: %w", w, h, limit, ErrTooLarge)
	}
	frames, global, err := gifScan(d, opts.maxFrames())
	if err != nil {
		return 0, fmt.Errorf("imageproc: decode gif: %w", err)
	}
	if len(frames) == 0 {
		return 0, fmt.Errorf("imageproc: decode gif: no frames: %w", ErrEmptyImage)
	}
	if total, limit := int64(len(frames))*int64(w)*int64(h), FrameWorkFactor*opts.maxPixels(); total > limit {
		return 0, fmt.Errorf("imageproc: decode gif: %d frames of %dx%d are %d pixels, more than %d (%d x the pixel limit): %w",
			len(frames), w, h, total, limit, FrameWorkFactor, ErrTooLarge)
	}
	bg := 0
	if d[10]&0x80 != 0 {
		bg = int(d[11])
	}
	// rgbOf is the colour of index i of a frame's table as Pillow fills with it: on frame 0 (a "P"
	// image) an index past the table is black; on later frames (RGB, Pillow's _rgb) it reads entry 0.
	rgbOf := func(frame int, pal []byte, i int) [3]byte {
		if 3*i+3 > len(pal) && frame > 0 {
			i = 0
		}
		if 3*i+3 > len(pal) {
			return [3]byte{}
		}
		return [3]byte{pal[3*i], pal[3*i+1], pal[3*i+2]}
	}
	canvas := make([]byte, 3*w*h)
	fill := func(r image.Rectangle, c [3]byte) {
		for y := r.Min.Y; y < r.Max.Y; y++ {
			row := canvas[3*(y*w+r.Min.X) : 3*(y*w+r.Max.X)]
			for x := 0; x < len(row); x += 3 {
				row[x], row[x+1], row[x+2] = c[0], c[1], c[2]
			}
		}
	}
	var (
		disposal   int             // sticky, as in Pillow
		pendRect   image.Rectangle // what the previous frame's disposal covers
		pendFill   *[3]byte        // disposal 2 (or 3 on frame 0): fill with this colour
		pendSaved  []byte          // disposal 3: the rectangle's pixels before the frame
		screenRect = image.Rect(0, 0, w, h)
	)
	for i, f := range frames {
		if !f.rect.In(screenRect) {
			return i, fmt.Errorf("imageproc: decode gif: frame %d %v extends past the %dx%d screen", i, f.rect, w, h)
		}
		m, err := decodeGIFFrame(d, global, f)
		if err != nil {
			return i, fmt.Errorf("imageproc: decode gif: frame %d: %w", i, err)
		}
		// Apply the previous frame's disposal.
		switch {
		case pendFill != nil:
			fill(pendRect, *pendFill)
		case pendSaved != nil:
			rw := 3 * pendRect.Dx()
			for y := pendRect.Min.Y; y < pendRect.Max.Y; y++ {
				o := 3 * (y*w + pendRect.Min.X)
				copy(canvas[o:o+rw], pendSaved[(y-pendRect.Min.Y)*rw:])
			}
		}
		pendFill, pendSaved, pendRect = nil, nil, f.rect
		if f.disposal != 0 {
			disposal = f.disposal
		}
		// This frame's disposal, taken before it is drawn.
		switch disposal {
		case 2:
			idx := bg
			if f.trans >= 0 {
				idx = f.trans
			}
			c := rgbOf(i, f.pal, idx)
			pendFill = &c
		case 3:
			if i > 0 {
				rw := 3 * f.rect.Dx()
				pendSaved = make([]byte, rw*f.rect.Dy())
				for y := f.rect.Min.Y; y < f.rect.Max.Y; y++ {
					o := 3 * (y*w + f.rect.Min.X)
					copy(pendSaved[(y-f.rect.Min.Y)*rw:], canvas[o:o+rw])
				}
			} else if f.trans >= 0 {
				c := rgbOf(i, f.pal, f.trans)
				pendFill = &c
			}
		}
		// Draw the frame.
		pal := m.Palette
		colour := func(idx uint8) [3]byte { // image/gif has checked idx against the table
			r, g, b, _ := pal[idx].RGBA()
			return [3]byte{byte(r >> 8), byte(g >> 8), byte(b >> 8)}
		}
		if i == 0 {
			start := 0
			if f.trans >= 0 {
				start = f.trans
			}
			c := [3]byte{}
			if start < len(pal) {
				c = colour(uint8(start))
			}
			fill(screenRect, c)
		}
		for y := f.rect.Min.Y; y < f.rect.Max.Y; y++ {
			src := m.Pix[m.PixOffset(f.rect.Min.X, y):m.PixOffset(f.rect.Max.X, y)]
			dst := canvas[3*(y*w+f.rect.Min.X):]
			for x, idx := range src {
				if i > 0 && int(idx) == f.trans {
					continue
				}
				c := colour(idx)
				dst[3*x], dst[3*x+1], dst[3*x+2] = c[0], c[1], c[2]
			}
		}
		out := &RGB{Width: w, Height: h, Pix: append([]byte(nil), canvas...)}
		if err := fn(i, out); err != nil {
			return i, err
		}
	}
	return len(frames), nil
}
