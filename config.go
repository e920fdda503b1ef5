package safety

import "github.com/sdsafety/safety/internal/clip"

// The model configurations [Info] and [TextInfo] report, read from a model's config.json with
// transformers' defaults for the keys it leaves out. They are plain values: copy and compare freely.

// EncoderConfig is the transformer encoder part of a CLIP tower's configuration, shared by
// [VisionConfig] and [TextConfig]: hidden size D, MLP width I, heads H (D is a multiple of H),
// layers L, the MLP activation (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu or silu) and the
// LayerNorm epsilon. HeadDim returns D/H.
type EncoderConfig = clip.EncoderConfig

// VisionConfig is the vision tower's configuration (transformers' CLIPVisionConfig): the encoder,
// the patch size, the square input's side ImageSize (a multiple of PatchSize) and the input channels.
// NumPatches returns (ImageSize/PatchSize)², the tower's sequence length without the class token.
type VisionConfig = clip.VisionConfig

// TextConfig is the text tower's configuration (transformers' CLIPTextConfig): the encoder, the
// vocabulary size, the context length (MaxPositionEmbeddings, 77), the end-of-text id that picks the
// pooled position (2 in legacy configs: the position of the largest id), and a bare text config's
// projection width.
type TextConfig = clip.TextConfig
