package safety

import (
	"errors"
	"fmt"
	"image"
	"reflect"

	"github.com/sdsafety/safety/internal/imageproc"
)

// Errors of decoding, re-exported from the preprocessing package; test with errors.Is.
var (
	// ErrImageTooLarge: the encoded image declares more pixels than WithMaxPixels allows. It is
	// refused before any pixel memory is allocated.
	ErrImageTooLarge = imageproc.ErrTooLarge
	// ErrEmptyImage: no bytes, or a zero-sized image.
	ErrEmptyImage = imageproc.ErrEmptyImage
	// ErrUnsupportedFormat: not PNG, JPEG, GIF, BMP, TIFF or WebP.
	ErrUnsupportedFormat = imageproc.ErrUnsupportedFormat
)

// Preprocess turns img into the model input exactly as the reference's CLIPImageProcessor (Pillow
// path) does: convert to RGB (alpha dropped, not composited), resize the shortest edge with Pillow's
// BICUBIC arithmetic, centre crop, rescale by 1/255 and normalise. It returns [3, S, S] float32 values
// in CHW order (S = Info().ImageSize). It does not use the model and is safe to call concurrently.
func (c *Checker) Preprocess(img image.Image) ([]float32, error) {
	rgb, err := fromImage(img, c.opts.maxPixels)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidInput, err)
	}
	return c.preprocessRGB(rgb)
}

// PreprocessEncoded decodes an encoded image (PNG, JPEG, GIF first frame, BMP, TIFF, WebP) with
// Pillow's convert("RGB") semantics and preprocesses it like [Checker.Preprocess]. Images declaring
// more pixels than WithMaxPixels allows are refused before decoding.
func (c *Checker) PreprocessEncoded(data []byte) ([]float32, error) {
	rgb, err := imageproc.Decode(data, c.decodeOptions())
	if err != nil {
		return nil, err
	}
	return c.preprocessRGB(rgb)
}

// PreprocessFile is PreprocessEncoded on the contents of a file, read without trusting it: a named
// pipe, device or directory is refused without blocking (ErrUnsupportedFormat), a file larger than
// the pixel limit allows (16 bytes a pixel plus 16 MiB) is refused before it is read (ErrImageTooLarge),
// and a file whose first bytes are no supported format is refused before the rest is read.
func (c *Checker) PreprocessFile(path string) ([]float32, error) {
	rgb, err := imageproc.DecodeFile(path, c.decodeOptions())
	if err != nil {
		return nil, err
	}
	return c.preprocessRGB(rgb)
}

func (c *Checker) decodeOptions() *imageproc.DecodeOptions {
	return &imageproc.DecodeOptions{MaxPixels: c.opts.maxPixels, ApplyOrientation: c.opts.orientation}
}

func (c *Checker) preprocessRGB(rgb *imageproc.RGB) ([]float32, error) {
	s := c.info.ImageSize
	w, h, err := c.proc.OutputSize(rgb.Width, rgb.Height)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	if w != s || h != s {
		return nil, fmt.Errorf("%w: preprocessing gives %dx%d, the model takes %dx%d", ErrInvalidInput, w, h, s, s)
	}
	out := make([]float32, 3*s*s)
	if err := c.proc.Preprocess(rgb, out); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return out, nil
}

// fromImage is imageproc.FromImage, refusing a nil image (a nil interface or a typed nil pointer) and
// an image of more than maxPixels pixels (ErrImageTooLarge, before converting it), and turning a panic
// of the image's own methods into an error.
func fromImage(img image.Image, maxPixels int64) (rgb *imageproc.RGB, err error) {
	if img == nil {
		return nil, errors.New("image is nil")
	}
	if v := reflect.ValueOf(img); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("image is a nil %T", img)
	}
	defer func() {
		if r := recover(); r != nil {
			rgb, err = nil, fmt.Errorf("converting the %T panicked: %v", img, r)
		}
	}()
	if b := img.Bounds(); int64(b.Dx())*int64(b.Dy()) > maxPixels {
		return nil, fmt.Errorf("%dx%d image is more than %d pixels: %w", b.Dx(), b.Dy(), maxPixels, ErrImageTooLarge)
	}
	return imageproc.FromImage(img)
}

// preprocessImages converts and preprocesses a batch in parallel: [n, 3, S, S]. base is the index of
// images[0] in the caller's call, for error messages.
func (c *Checker) preprocessImages(images []image.Image, base int) ([]float32, error) {
	rgbs := make([]*imageproc.RGB, len(images))
	for i, img := range images {
		rgb, err := fromImage(img, c.opts.maxPixels)
		if err != nil {
			return nil, fmt.Errorf("%w: image %d: %w", ErrInvalidInput, base+i, err)
		}
		w, h, err := c.proc.OutputSize(rgb.Width, rgb.Height)
		if err == nil && (w != c.info.ImageSize || h != c.info.ImageSize) {
			err = errors.New("preprocessing does not give the model's input size")
		}
		if err != nil {
			return nil, fmt.Errorf("%w: image %d: %v", ErrInvalidInput, base+i, err)
		}
		rgbs[i] = rgb
	}
	pix, err := c.proc.PreprocessBatch(rgbs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInput, err)
	}
	return pix, nil
}
