package imageproc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// wantRGB is what Pillow's convert("RGB") gives for the pixel (x, y) of the colour model built by
// colourModels from an NRGBA colour c (see FromImage for each rule).
func wantRGB(model string, c color.NRGBA, pal color.Palette, idx uint8) [3]uint8 {
	switch model {
	case "NRGBA":
		return [3]uint8{c.R, c.G, c.B}
	case "RGBA", "RGBA64": // stored premultiplied, read back like Pillow's "RGBa" unpacker
		p := color.RGBAModel.Convert(c).(color.RGBA)
		r, g, b := unpremultiply8(p.R, p.G, p.B, p.A)
		return [3]uint8{r, g, b}
	case "Gray":
		return [3]uint8{c.G, c.G, c.G}
	case "Gray16": // value R<<8|G: saturates to 255 unless R == 0
		v := c.G
		if c.R != 0 {
			v = 255
		}
		return [3]uint8{v, v, v}
	case "NRGBA64": // high bytes
		return [3]uint8{c.R, c.G, c.B}
	case "CMYK":
		r, g, b := cmykToRGB(c.R, c.G, c.B, c.A)
		return [3]uint8{r, g, b}
	case "Paletted":
		n := pal[idx].(color.NRGBA)
		return [3]uint8{n.R, n.G, n.B}
	}
	panic(model)
}

// TestFromImageColourModels checks every FromImage path pixel by pixel, including a sub-image with
// a non-zero origin.
func TestFromImageColourModels(t *testing.T) {
	src := pattern(23, 17, 1)
	for name, img := range colourModels(src) {
		t.Run(name, func(t *testing.T) {
			for _, sub := range []bool{false, true} {
				var in image.Image = img
				r := src.Bounds()
				if sub {
					r = image.Rect(3, 2, 20, 15)
					in = img.(interface {
						SubImage(image.Rectangle) image.Image
					}).SubImage(r)
				}
				got, err := FromImage(in)
				if err != nil {
					t.Fatal(err)
				}
				if got.Width != r.Dx() || got.Height != r.Dy() {
					t.Fatalf("size %dx%d, want %v", got.Width, got.Height, r.Size())
				}
				var pal color.Palette
				if p, ok := img.(*image.Paletted); ok {
					pal = p.Palette
				}
				for y := r.Min.Y; y < r.Max.Y; y++ {
					for x := r.Min.X; x < r.Max.X; x++ {
						var idx uint8
						if p, ok := img.(*image.Paletted); ok {
							idx = p.ColorIndexAt(x, y)
						}
						want := wantRGB(name, src.NRGBAAt(x, y), pal, idx)
						o := ((y-r.Min.Y)*got.Width + x - r.Min.X) * 3
						if g := [3]uint8(got.Pix[o : o+3]); g != want {
							t.Fatalf("sub=%v (%d,%d): got %v want %v (source %v)", sub, x, y, g, want, src.NRGBAAt(x, y))
						}
					}
				}
			}
		})
	}
}

// TestDecodeFormats encodes one picture in every format and colour model the Go encoders can write
// and checks that Decode returns FromImage's pixels (the per-model rules are checked above).
func TestDecodeFormats(t *testing.T) {
	src := pattern(31, 19, 2)
	type enc struct {
		name string
		fn   func(io.Writer, image.Image) error
	}
	encs := []enc{
		{"png", func(w io.Writer, m image.Image) error { return png.Encode(w, m) }},
		{"tiff", func(w io.Writer, m image.Image) error { return tiff.Encode(w, m, nil) }},
		{"tiff-deflate", func(w io.Writer, m image.Image) error {
			return tiff.Encode(w, m, &tiff.Options{Compression: tiff.Deflate})
		}},
		{"bmp", bmp.Encode},
	}
	for model, img := range colourModels(src) {
		for _, e := range encs {
			if e.name == "bmp" && (model == "Gray16" || model == "NRGBA64" || model == "RGBA64" || model == "CMYK") {
				continue // x/image/bmp cannot write these
			}
			if e.name == "png" && model == "CMYK" {
				continue // PNG has no CMYK
			}
			t.Run(e.name+"/"+model, func(t *testing.T) {
				var buf bytes.Buffer
				if err := e.fn(&buf, img); err != nil {
					t.Fatal(err)
				}
				decoded, _, err := image.Decode(bytes.NewReader(buf.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				want, err := FromImage(decoded)
				if err != nil {
					t.Fatal(err)
				}
				got, err := Decode(buf.Bytes(), nil)
				if err != nil {
					t.Fatal(err)
				}
				if got.Width != 31 || got.Height != 19 || !bytes.Equal(got.Pix, want.Pix) {
					t.Fatalf("Decode differs from FromImage(image.Decode)")
				}
			})
		}
	}
}

// TestGoldenDecode decodes files made by Pillow (testdata/golden, see make_golden.py) and requires
// exactly the pixels Pillow 13 decoded from them (libjpeg-turbo, libwebp).
func TestGoldenDecode(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*"))
	n := 0
	for _, path := range files {
		if strings.HasSuffix(path, ".pillow.png") {
			continue
		}
		n++
		t.Run(filepath.Base(path), func(t *testing.T) {
			got, err := DecodeFile(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, err := DecodeFile(path+".pillow.png", nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.Width != want.Width || got.Height != want.Height {
				t.Fatalf("size %dx%d, Pillow %dx%d", got.Width, got.Height, want.Width, want.Height)
			}
			if d := countDiff(got.Pix, want.Pix); d != 0 {
				t.Fatalf("%d of %d samples differ from Pillow (max %d)", d, len(got.Pix), maxAbsDiff(got.Pix, want.Pix))
			}
		})
	}
	if n < 10 {
		t.Fatalf("only %d golden files found", n)
	}
}

// TestDecodeGIFCanvas: the first frame lies on the logical screen; the rest is the transparent index
// (or index 0), with the colour the file stores for it.
func TestDecodeGIFCanvas(t *testing.T) {
	pal := color.Palette{color.RGBA{10, 20, 30, 255}, color.RGBA{200, 100, 50, 255}, color.RGBA{0, 0, 0, 0}}
	fr := image.NewPaletted(image.Rect(2, 1, 6, 4), pal)
	for i := range fr.Pix {
		fr.Pix[i] = 1
	}
	var buf bytes.Buffer
	g := &gif.GIF{Image: []*image.Paletted{fr}, Delay: []int{0}, Config: image.Config{ColorModel: pal, Width: 8, Height: 6}}
	if err := gif.EncodeAll(&buf, g); err != nil {
		t.Fatal(err)
	}
	// Make the transparent entry's stored colour visible: image/gif writes it as black.
	data := buf.Bytes()
	pos := bytes.Index(data, []byte{10, 20, 30, 200, 100, 50, 0, 0, 0})
	if pos < 0 {
		t.Fatal("palette not found")
	}
	copy(data[pos+6:], []byte{0, 255, 0})
	got, err := Decode(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Width != 8 || got.Height != 6 {
		t.Fatalf("size %dx%d, want the 8x6 screen", got.Width, got.Height)
	}
	at := func(x, y int) [3]uint8 { o := (y*8 + x) * 3; return [3]uint8(got.Pix[o : o+3]) }
	if at(0, 0) != [3]uint8{0, 255, 0} || at(7, 5) != [3]uint8{0, 255, 0} {
		t.Errorf("outside the frame: %v %v, want the transparent index's stored colour", at(0, 0), at(7, 5))
	}
	if at(2, 1) != [3]uint8{200, 100, 50} || at(5, 3) != [3]uint8{200, 100, 50} {
		t.Errorf("inside the frame: %v %v", at(2, 1), at(5, 3))
	}
}

// pngHeader returns a PNG signature and IHDR chunk declaring w×h 8-bit RGB, plus a tiny IDAT.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		b.Write(c)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

func TestDecodeErrors(t *testing.T) {
	var okPNG, okJPEG bytes.Buffer
	src := pattern(40, 30, 3)
	if err := png.Encode(&okPNG, src); err != nil {
		t.Fatal(err)
	}
	if err := jpeg.Encode(&okJPEG, src, nil); err != nil {
		t.Fatal(err)
	}
	progressive, err := os.ReadFile(filepath.Join("testdata", "golden", "progressive_420.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		opts *DecodeOptions
		want error // nil: any error
	}{
		{"zero bytes", nil, nil, ErrEmptyImage},
		{"text file", []byte("hello, this is not an image\n"), nil, ErrUnsupportedFormat},
		{"html", []byte("<!DOCTYPE html><html></html>"), nil, ErrUnsupportedFormat},
		{"100000x100000 PNG header", pngHeader(100000, 100000), nil, ErrTooLarge},
		{"limit 1000 pixels", okPNG.Bytes(), &DecodeOptions{MaxPixels: 1000}, ErrTooLarge},
		{"zero-width PNG", pngHeader(0, 10), nil, nil},
		{"truncated PNG header", okPNG.Bytes()[:20], nil, nil},
		{"truncated PNG data", okPNG.Bytes()[:len(okPNG.Bytes())/2], nil, nil},
		{"PNG without IEND", okPNG.Bytes()[:len(okPNG.Bytes())-12], nil, nil},
		{"JPEG SOI only", []byte{0xff, 0xd8}, nil, nil},
		{"truncated JPEG header", okJPEG.Bytes()[:100], nil, nil},
		{"truncated JPEG data", okJPEG.Bytes()[:len(okJPEG.Bytes())*2/3], nil, io.ErrUnexpectedEOF},
		{"JPEG without EOI", okJPEG.Bytes()[:len(okJPEG.Bytes())-2], nil, io.ErrUnexpectedEOF},
		{"truncated progressive JPEG", progressive[:len(progressive)/2], nil, io.ErrUnexpectedEOF},
		{"GIF header only", []byte("GIF89a\x10\x00\x10\x00\x00\x00\x00"), nil, nil},
		{"BMP magic only", []byte("BM"), nil, nil},
		{"TIFF magic only", []byte("II*\x00"), nil, nil},
		{"WebP header only", []byte("RIFF\x10\x00\x00\x00WEBPVP8 \x04\x00\x00\x00"), nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := Decode(c.data, c.opts)
			if err == nil {
				t.Fatalf("no error, got a %dx%d image", img.Width, img.Height)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %q does not wrap %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "imageproc: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if f := Sniff(c.data); f != "" && !strings.Contains(err.Error(), f) {
				t.Errorf("error %q does not name the format %s", err, f)
			}
		})
	}
	if _, err := DecodeFile(filepath.Join(t.TempDir(), "missing.png"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("DecodeFile(missing) = %v, want os.ErrNotExist", err)
	}
	// A negative limit disables the check.
	if _, err := Decode(okPNG.Bytes(), &DecodeOptions{MaxPixels: -1}); err != nil {
		t.Errorf("MaxPixels -1: %v", err)
	}
}

// TestOrientation covers the EXIF parsing (JPEG APP1, little and big endian) and the eight transforms.
func TestOrientation(t *testing.T) {
	src := &RGB{Width: 3, Height: 2, Pix: []uint8{
		1, 1, 1, 2, 2, 2, 3, 3, 3,
		4, 4, 4, 5, 5, 5, 6, 6, 6,
	}}
	want := map[int][]uint8{ // first channel of the result, row by row
		1: {1, 2, 3, 4, 5, 6},
		2: {3, 2, 1, 6, 5, 4},
		3: {6, 5, 4, 3, 2, 1},
		4: {4, 5, 6, 1, 2, 3},
		5: {1, 4, 2, 5, 3, 6},
		6: {4, 1, 5, 2, 6, 3},
		7: {6, 3, 5, 2, 4, 1},
		8: {3, 6, 2, 5, 1, 4},
	}
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewGray(image.Rect(0, 0, 3, 2)), nil); err != nil {
		t.Fatal(err)
	}
	for o := 1; o <= 8; o++ {
		got := Orient(src, o)
		var ch []uint8
		for i := 0; i < len(got.Pix); i += 3 {
			ch = append(ch, got.Pix[i])
		}
		if !bytes.Equal(ch, want[o]) {
			t.Errorf("Orient %d: %v, want %v", o, ch, want[o])
		}
		if o >= 5 && (got.Width != 2 || got.Height != 3) {
			t.Errorf("Orient %d: size %dx%d", o, got.Width, got.Height)
		}
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			data := withExif(jpg.Bytes(), bo, o)
			if g := Orientation(data); g != o {
				t.Errorf("Orientation(%v, %d) = %d", bo, o, g)
			}
			img, err := Decode(data, &DecodeOptions{ApplyOrientation: true})
			if err != nil {
				t.Fatal(err)
			}
			if o >= 5 && img.Width != 2 || o < 5 && img.Width != 3 {
				t.Errorf("Decode with orientation %d: %dx%d", o, img.Width, img.Height)
			}
			plain, _ := Decode(data, nil)
			if plain.Width != 3 {
				t.Errorf("orientation applied without ApplyOrientation")
			}
		}
	}
	if Orientation([]byte("nothing")) != 1 || Orientation(jpg.Bytes()) != 1 {
		t.Error("Orientation without EXIF must be 1")
	}
}

// withExif inserts an APP1 Exif segment with one Orientation entry after the SOI marker.
func withExif(jpg []byte, bo binary.ByteOrder, o int) []byte {
	var t bytes.Buffer
	if bo == binary.LittleEndian {
		t.WriteString("II*\x00")
	} else {
		t.WriteString("MM\x00*")
	}
	binary.Write(&t, bo, uint32(8))
	binary.Write(&t, bo, uint16(1))
	binary.Write(&t, bo, uint16(0x0112))
	binary.Write(&t, bo, uint16(3))
	binary.Write(&t, bo, uint32(1))
	binary.Write(&t, bo, uint16(o))
	binary.Write(&t, bo, uint16(0))
	binary.Write(&t, bo, uint32(0))
	seg := append([]byte("Exif\x00\x00"), t.Bytes()...)
	out := append([]byte{}, jpg[:2]...)
	out = append(out, 0xff, 0xe1, byte((len(seg)+2)>>8), byte(len(seg)+2))
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

func TestSniff(t *testing.T) {
	cases := map[string]string{
		"\x89PNG\r\n\x1a\nxxxx":        FormatPNG,
		"\xff\xd8\xff\xe0":             FormatJPEG,
		"GIF89a....":                   FormatGIF,
		"GIF87a....":                   FormatGIF,
		"BMxxxx":                       FormatBMP,
		"II*\x00xxxx":                  FormatTIFF,
		"MM\x00*xxxx":                  FormatTIFF,
		"RIFF\x00\x00\x00\x00WEBPVP8L": FormatWebP,
		"RIFF\x00\x00\x00\x00WAVEfmt ": "",
		"":                             "",
		"plain text":                   "",
	}
	for in, want := range cases {
		if got := Sniff([]byte(in)); got != want {
			t.Errorf("Sniff(%q) = %q, want %q", in, got, want)
		}
	}
}
