// Package safety is diffusers' Stable Diffusion safety checker (StableDiffusionSafetyChecker, weights
// CompVis/stable-diffusion-safety-checker) for Go, on libtorch through gotch.
//
// # The model
//
// An image is preprocessed as the reference's CLIPImageProcessor does (Pillow path: convert to RGB,
// bicubic resize of the shortest edge to 224, centre crop, rescale, normalise), embedded by a CLIP
// ViT-L/14 vision tower and its visual projection into a 768-wide vector e, and compared with 17 NSFW
// concept embeddings and 3 "special care" ones:
//
//	cos_k     = normalize(e) · normalize(C_k)
//	special_k = round3(cos_k − w_k + adj)   adj = 0, becoming 0.01 from the first special hit on
//	concept_k = round3(cos_k − w_k + adj)   NSFW ⇔ some concept_k > 0
//
// with round3 numpy's float32 rounding to three decimals. [Result] returns all of these, not just the
// verdict diffusers keeps. [WithAdjustment] adds a constant to every concept score (a sensitivity knob),
// and custom concepts embedded from text ([LoadTextEncoder], [Checker.AddConcept]) are scored beside
// the built-in ones.
//
// # Entry points
//
// [Load] reads a model directory in Hugging Face layout; [FromPretrained] takes a hub repository id
// and uses (or fills) the Hugging Face cache that diffusers and transformers share. [Checker.Check]
// takes image.Image values, [Checker.PreprocessFile] and [Checker.CheckPixels] split decoding from
// the model, and [Checker.CheckTensor] takes a decoded diffusion batch [B, 3, H, W] as a pipeline
// holds it and returns it with flagged images zeroed.
//
// # Concurrent callers and serving
//
// By default each call runs alone on the model thread, so many goroutines checking one image each get
// batch-1 throughput. [WithBatchWindow] turns on dynamic batching: calls with fewer images than the
// batch size wait at most the window for other calls and run with them as one model batch; each
// caller gets exactly its own results, a caller whose context ends before its batch starts leaves it,
// a non-finite image fails only its own caller, and a caller alone in the checker does not wait. As
// in the reference, the third decimal of a score can move with the batch an image shares.
// The command cmd/safetyd serves a Checker over HTTP with batching on.
//
// # Invariants
//
//   - Every libtorch call of a Checker runs on one OS thread owned by the Checker (libtorch keeps grad
//     mode and gotch its last error per thread); a Checker is safe for concurrent use and serialises
//     model calls, while decoding and preprocessing run on the calling goroutines.
//   - A Checker owns its weight tensors until [Checker.Close]; every intermediate tensor of a call is
//     dropped before the call returns. Tensors a method returns (CheckTensor's Images) belong to the
//     caller, who must Drop them.
//   - Errors, never a silent "safe": a non-finite weight, input or output, an image that cannot be
//     decoded, or a shape that does not fit is an error ([ErrNonFinite], [ErrCheckpoint],
//     [ErrInvalidInput], …), and no library code ends the process.
//   - Slices in a Result are not shared with the Checker; results of one batch may share backing
//     arrays with each other, so copy before appending to them.
package safety
