package imageproc

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/png"
	"io"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"

	"github.com/sdsafety/safety/internal/fileread"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrTooLarge: the image declares more pixels than allowed (see DecodeOptions.MaxPixels).
	ErrTooLarge = errors.New("image too large")
	// ErrEmptyImage: no input bytes, or an image with zero width or height.
	ErrEmptyImage = errors.New("empty image")
	// ErrUnsupportedFormat: the bytes are not PNG, JPEG, GIF, BMP, TIFF or WebP.
	ErrUnsupportedFormat = errors.New("unsupported image format")
)

// DefaultMaxPixels is the default DecodeOptions.MaxPixels: 100 megapixels.
const DefaultMaxPixels = 100_000_000

// DecodeOptions tunes Decode. A nil *DecodeOptions means the zero value, i.e. the defaults.
type DecodeOptions struct {
	// MaxPixels refuses an image whose header declares more than this many pixels (width·height),
	// before any pixel memory is allocated. 0 means DefaultMaxPixels; a negative value disables the
	// check (a hard ceiling of 2^30 pixels still applies).
	MaxPixels int64
	// ApplyOrientation rotates/flips the image as its EXIF Orientation tag says (JPEG APP1, PNG eXIf,
	// WebP EXIF, TIFF IFD0), like PIL.ImageOps.exif_transpose. Off by default because the reference
	// pipeline (CLIPImageProcessor on Image.open) does not do it.
	ApplyOrientation bool
	// MaxFrames bounds DecodeFrames: an input with more frames is refused (ErrTooLarge) before any
	// frame is decoded. 0 (or less) means DefaultMaxFrames. Decode ignores it.
	MaxFrames int
}

func (o *DecodeOptions) maxPixels() int64 {
	if o == nil || o.MaxPixels == 0 {
		return DefaultMaxPixels
	}
	if o.MaxPixels < 0 {
		return maxRGBPixels
	}
	return min(o.MaxPixels, maxRGBPixels)
}

// Format names returned by Sniff.
const (
	FormatPNG  = "png"
	FormatJPEG = "jpeg"
	FormatGIF  = "gif"
	FormatBMP  = "bmp"
	FormatTIFF = "tiff"
	FormatWebP = "webp"
)

// Sniff names the format of data from its magic bytes, or returns "" when it is none of the supported
// formats.
func Sniff(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return FormatPNG
	case bytes.HasPrefix(data, []byte("\xff\xd8")):
		return FormatJPEG
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return FormatGIF
	case bytes.HasPrefix(data, []byte("BM")):
		return FormatBMP
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return FormatTIFF
	case len(data) >= 16 && string(data[:4]) == "RIFF" && string(data[8:15]) == "WEBPVP8":
		return FormatWebP
	}
	return ""
}

type codec struct {
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

var codecs = map[string]codec{
	FormatPNG:  {png.DecodeConfig, png.Decode},
	FormatJPEG: {nil, nil}, // decoded by jpeg.go
	FormatGIF:  {gif.DecodeConfig, gif.Decode},
	FormatBMP:  {bmp.DecodeConfig, bmp.Decode},
	FormatTIFF: {tiff.DecodeConfig, tiff.Decode},
	FormatWebP: {webp.DecodeConfig, webp.Decode},
}

// Decode decodes a PNG, JPEG, GIF (first frame), BMP, TIFF or WebP image into the pixels that
// PIL.Image.open(...).convert("RGB") gives (Pillow 13): see FromImage for the colour-model rules.
// JPEGs are decoded by this package's libjpeg-exact decoder, lossy WebP planes are converted like
// libwebp, and a GIF's first frame is placed on its logical screen. The header is checked against
// opts.MaxPixels before any pixel memory is allocated. Errors wrap ErrEmptyImage, ErrTooLarge,
// ErrUnsupportedFormat or the decoder's error (truncated JPEG data wraps io.ErrUnexpectedEOF), and
// name the format.
func Decode(data []byte, opts *DecodeOptions) (*RGB, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("imageproc: decode: no data: %w", ErrEmptyImage)
	}
	format := Sniff(data)
	c, ok := codecs[format]
	if !ok {
		return nil, fmt.Errorf("imageproc: decode: %w", ErrUnsupportedFormat)
	}
	cfg, err := guard(format, func() (image.Config, error) {
		if format == FormatJPEG {
			return jpegConfig(data)
		}
		return c.config(bytes.NewReader(data))
	})
	if err != nil {
		return nil, fmt.Errorf("imageproc: decode %s header: %w", format, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("imageproc: decode %s: %dx%d image: %w", format, cfg.Width, cfg.Height, ErrEmptyImage)
	}
	if limit := opts.maxPixels(); int64(cfg.Width)*int64(cfg.Height) > limit {
		return nil, fmt.Errorf("imageproc: decode %s: %dx%d is more than %d pixels: %w",
			format, cfg.Width, cfg.Height, limit, ErrTooLarge)
	}
	var out *RGB
	if format == FormatJPEG {
		// Our own decoder: libjpeg's IDCT, upsampling and colour conversion (see jpeg.go).
		out, err = guard(format, func() (*RGB, error) { return decodeJPEG(data) })
	} else {
		var img image.Image
		img, err = guard(format, func() (image.Image, error) { return c.decode(bytes.NewReader(data)) })
		if err == nil {
			if b := img.Bounds(); b.Dx() > cfg.Width || b.Dy() > cfg.Height {
				err = fmt.Errorf("image %v larger than its header %dx%d", b, cfg.Width, cfg.Height)
			}
		}
		if err == nil {
			out, err = convertDecoded(format, img, data, cfg)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("imageproc: decode %s: %w", format, err)
	}
	if out.Width != cfg.Width || out.Height != cfg.Height {
		return nil, fmt.Errorf("imageproc: decode %s: decoded %dx%d, header says %dx%d", format, out.Width, out.Height, cfg.Width, cfg.Height)
	}
	if opts != nil && opts.ApplyOrientation {
		out = Orient(out, Orientation(data))
	}
	return out, nil
}

// guard runs a decoder call and turns a panic into an error.
func guard[T any](format string, fn func() (T, error)) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s decoder panicked: %v", format, r)
		}
	}()
	return fn()
}

// Bounds of ReadFile: an encoded image may take up to bytesPerPixel bytes a pixel (uncompressed
// 16-bit RGBA takes 8) plus fileSlack bytes of headers and metadata.
const (
	bytesPerPixel = 16
	fileSlack     = 16 << 20
)

// MaxFileSize returns the largest image file ReadFile reads under opts: 16 bytes for each pixel
// opts.MaxPixels allows, plus 16 MiB for headers and metadata.
func MaxFileSize(opts *DecodeOptions) int64 {
	return opts.maxPixels()*bytesPerPixel + fileSlack
}

// sniffLen is how many leading bytes Sniff needs to tell every supported format.
const sniffLen = 16

// ReadFile reads an image file for Decode without trusting it: it opens the file without blocking,
// refuses a named pipe, device, socket or directory (fileread.ErrNotRegular, wrapped with
// ErrUnsupportedFormat), refuses a file larger than MaxFileSize(opts) before reading it (ErrTooLarge),
// reads the first bytes and refuses a file that is no supported format (ErrUnsupportedFormat) or empty
// (ErrEmptyImage) before reading the rest, and reads the rest through the size limit.
func ReadFile(path string, opts *DecodeOptions) ([]byte, error) {
	limit := MaxFileSize(opts)
	f, size, err := fileread.Open(path, limit)
	switch {
	case errors.Is(err, fileread.ErrNotRegular):
		return nil, fmt.Errorf("imageproc: %w: %w", ErrUnsupportedFormat, err)
	case errors.Is(err, fileread.ErrTooLarge):
		return nil, fmt.Errorf("imageproc: %w: %w", ErrTooLarge, err)
	case err != nil:
		return nil, fmt.Errorf("imageproc: %w", err)
	}
	defer f.Close()
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("imageproc: %s: %w", path, err)
	}
	head = head[:n]
	if n == 0 {
		return nil, fmt.Errorf("imageproc: %s: no data: %w", path, ErrEmptyImage)
	}
	if Sniff(head) == "" { // a file shorter than sniffLen is all in head: Decode would say the same
		return nil, fmt.Errorf("imageproc: %s: %w", path, ErrUnsupportedFormat)
	}
	data, err := fileread.ReadAll(f, path, head, size, limit)
	if errors.Is(err, fileread.ErrTooLarge) {
		return nil, fmt.Errorf("imageproc: %w: %w", ErrTooLarge, err)
	}
	if err != nil {
		return nil, fmt.Errorf("imageproc: %w", err)
	}
	return data, nil
}

// DecodeFile reads the image file at path with ReadFile (which bounds what it reads) and decodes it
// (see Decode). Errors name the file.
func DecodeFile(path string, opts *DecodeOptions) (*RGB, error) {
	data, err := ReadFile(path, opts)
	if err != nil {
		return nil, err
	}
	img, err := Decode(data, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return img, nil
}

// convertDecoded turns what an x/image or image/* decoder returned into RGB the way Pillow sees the
// file: GIF frames go onto their logical screen, lossy WebP planes get libwebp's conversion.
func convertDecoded(format string, img image.Image, data []byte, cfg image.Config) (*RGB, error) {
	switch m := img.(type) {
	case *image.Paletted:
		if format == FormatGIF {
			img = gifCanvas(data, m, cfg)
		}
	case *image.YCbCr:
		if format == FormatWebP {
			dst, err := NewRGB(m.Rect.Dx(), m.Rect.Dy())
			if err == nil {
				webpToRGB(m, dst)
			}
			return dst, err
		}
	case *image.NYCbCrA:
		if format == FormatWebP {
			dst, err := NewRGB(m.Rect.Dx(), m.Rect.Dy())
			if err == nil {
				webpToRGB(&m.YCbCr, dst)
			}
			return dst, err
		}
	}
	return FromImage(img)
}
