// Package clip is the CLIP model this module runs: the vision tower (the safety checker's), the text
// tower (the custom concepts' text encoder), the one transformer encoder both use, the key spec that
// lists and binds their weights, the loader that validates and loads a checkpoint, and the model
// configurations (one EncoderConfig in the vision and text configs, presets, one parser and one
// validator).
//
// # Invariants
//
//   - One encoder: [Encoder] is L pre-LayerNorm blocks (h = x + attn(ln1(x)); out = h + mlp(ln2(h)))
//     whose attention is causal (text) or not (vision) by a field; both towers run the same code.
//   - One key spec: every module describes each weight once, as (checkpoint path, shape, destination
//     field) on a [Spec] at the module's path. [Keys] lists the checkpoint keys from it for
//     validation, and the loader binds each loaded tensor to its field from the same [Param], so no
//     key is listed without being bound or bound without being listed.
//   - Validation before loading: a checkpoint is refused ([ErrCheckpoint], at most 8 problems named)
//     for a missing, unexpected, misshapen or non-float tensor before any weight is copied; a weight
//     with a NaN or ±Inf element (also after conversion to the compute dtype) is refused while it is
//     copied.
//   - Stacked weights: each kind of encoder-layer weight of all L layers is one tensor (a dozen
//     tensors, not a dozen per layer), with q, k and v fused: the layer-l slice of
//     "….encoder.layers.*.self_attn.qkv_proj.weight" is [3D, D], rows q, then k, then v. A forward
//     pass takes layer l's weights as views. Loading concatenates the checkpoint tensors straight
//     into the stack ([Group]), one stack at a time.
//   - The forward math is the reference's: residual sums written in place, a chunked MLP with the
//     activation in place (quick_gelu as x·σ(1.702x)), the softmax of the explicit attention in
//     float32, and (vision) the last layer computed for the class token only, which is all the
//     pooled output reads.
//
// # Shapes
//
// D = hidden size, I = MLP width, H = heads, L = layers, P = projection dim, S = image side,
// N = (S/patch)², T = context length (77).
//
//	vision: pixels [B,3,S,S] → patches [B,N,D] → +class, +positions [B,N+1,D] → pre_layrnorm →
//	        encoder (last layer class token only) [B,D] → post_layernorm = pooled [B,D] → visual_projection [B,P]
//	text:   ids [B,T] → token + position embeddings [B,T,D] → causal encoder [B,T,D] →
//	        end-of-text rows [B,D] → final_layer_norm = pooled [B,D] → text_projection [B,P] (when present)
//
// # Threads and imports
//
// Every method that touches a tensor runs on the owning model's worker thread and records what it
// creates on the caller's [gotchutil.Tape]. The package imports gotch, internal/gotchutil,
// internal/checkpoint (file formats) and internal/fileread (bounded config reads) only; the root
// package's layering test keeps it so.
package clip
