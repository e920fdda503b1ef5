// Package imageproc decodes images and turns them into the CLIP input of the Stable Diffusion safety
// checker, bit for bit like the Python reference: transformers' CLIPImageProcessor on its Pillow path
// (Image.open → convert("RGB") → resize → centre crop → rescale → normalise → CHW float32), as run
// with transformers 5.12 and Pillow 13.
//
// Pipeline, for the SD v1 feature extractor configuration ([DefaultConfig], or [LoadConfig] on a
// model's preprocessor_config.json):
//
//  1. [DecodeFile] reads through [ReadFile] (no pipes or devices, a size bound from MaxPixels, the
//     format sniffed from the first bytes before the rest is read).
//     [Decode] / [DecodeFile] sniff the format (PNG, JPEG, GIF first frame, BMP, TIFF, WebP), refuse
//     an image whose header declares more than [DecodeOptions].MaxPixels pixels before any pixel
//     memory is allocated, decode it and convert it to packed 8-bit [RGB] with Pillow's
//     convert("RGB") semantics ([FromImage] lists the rules: alpha dropped without compositing,
//     palettes and greyscale expanded, 16-bit colour samples keep their high byte, 16-bit greyscale
//     saturates at 255 like Pillow's "I;16" mode, CMYK through Pillow's cmyk2rgb).
//     JPEGs go through this package's own decoder (jpeg.go), which reproduces libjpeg-turbo: its
//     integer IDCT, fancy chroma upsampling and colour conversion. Lossy WebP planes from
//     x/image/webp get libwebp's fancy upsampling and YUV→RGB. GIFs are placed on their logical
//     screen like Pillow's frame 0.
//  2. [Config.Preprocess] resizes (shortest edge 224, long edge int(224·long/short)) with an exact
//     port of Pillow 13's libImaging/Resample.c (float64 weights, 22-bit fixed point, 8-bit
//     intermediate, Pillow's pass order), centre-crops 224×224 (offset (H−224)//2, zero padding
//     where the image is smaller), computes float32(float64(v)·rescale_factor), then (x − mean)/std
//     in float32, and writes [3, H, W] channel-first. Only the cropped part of the resize is
//     computed. [Config.PreprocessBatch] does a batch in parallel.
//
// Parity: the shared parity fixture (PNGs and a JPEG) and a cross-check against Pillow and
// transformers on generated images of every format, colour model, JPEG/WebP variant and random
// resize (TestPillowCrossCheck) agree bit for bit. Known gaps: NEAREST resampling; arithmetic-coded,
// lossless, hierarchical and 12-bit JPEGs (errors); libjpeg's inter-block smoothing for progressive
// JPEGs whose scans omit low-frequency coefficient bits (not reproduced); BMP and TIFF variants that
// x/image cannot read (errors).
//
// Everything is pure Go (standard library and golang.org/x/image), no cgo. Errors are wrapped with
// an "imageproc:" prefix and the format; test them with errors.Is against [ErrEmptyImage],
// [ErrTooLarge] and [ErrUnsupportedFormat].
package imageproc
