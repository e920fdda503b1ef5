// Package clip is the CLIP transformer encoder shared by the vision tower (the safety checker's) and
// the text tower (the custom concepts' text encoder): one pre-LayerNorm encoder whose attention is
// causal or not by a parameter, the per-layer checkpoint key spec that both lists and binds its
// weights, the plan that loads those weights stacked over the layers, and the model configurations
// (one EncoderConfig in the vision and text configs, presets, one parser and one validator).
//
// Both towers run the same measured memory and speed work: the layers' weights stacked in a dozen
// tensors, q, k and v fused, residual sums written in place, a chunked MLP with the activation in
// place, and (vision) a last layer computed for the class token only.
//
// Every method that touches a tensor runs on the owning model's worker thread and records what it
// creates on the caller's [gotchutil.Tape]. The package imports gotch, internal/gotchutil and
// internal/fileread (bounded config reads) only; the root package's layering test keeps it so.
package clip
