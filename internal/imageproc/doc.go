// Package imageproc decodes images and turns them into the CLIP model input that the Stable Diffusion
// safety checker expects, bit-for-bit like the Python reference: transformers' CLIPImageProcessor on its
// Pillow path (convert("RGB") → resize → centre crop → rescale → normalise → CHW float32).
//
// The pipeline, for the SD v1 feature extractor configuration ([DefaultConfig]):
//
//  1. [Decode] / [DecodeFile] sniff the format (PNG, JPEG, GIF first frame, BMP, TIFF, WebP), refuse an
//     image whose header declares more than [DecodeOptions].MaxPixels pixels before any pixel memory is
//     allocated, decode it, and convert it to packed 8-bit RGB ([RGB]) with Pillow's convert("RGB")
//     semantics ([FromImage]): alpha is dropped without compositing, palettes and greyscale expand,
//     16-bit colour samples keep their high byte, 16-bit greyscale saturates at 255 (Pillow's "I;16"
//     mode), CMYK uses Pillow's cmyk2rgb, and YCbCr JPEGs are converted like libjpeg does (fancy
//     chroma upsampling, libjpeg's fixed-point colour tables).
//  2. [Config.Preprocess] resizes the shortest edge to 224 with Pillow's BICUBIC resampler (an exact
//     port of libImaging/Resample.c: float64 coefficients, 22-bit fixed point, horizontal pass first into
//     an 8-bit intermediate), centre-crops 224×224, computes float32(float64(v)·rescale_factor), then
//     (v − mean)/std in float32, and writes the result channel-first ([3, H, W]).
//
// Parity: PNG, GIF, BMP, TIFF and lossless WebP inputs decode to exactly the bytes Pillow produces, and
// the whole pipeline matches the reference's float32 output bit for bit. JPEG and lossy WebP inputs go
// through a different IDCT / colour conversion than libjpeg-turbo / libwebp, so a few 8-bit levels may
// differ; after resizing and normalisation the difference stays within a couple of 8-bit steps.
//
// Everything here is pure Go (standard library and golang.org/x/image); no cgo.
package imageproc
