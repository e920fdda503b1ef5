package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/sdsafety/safety/internal/fileread"
)

// VisionConfig is the part of transformers' CLIPVisionConfig the vision tower needs.
type VisionConfig struct {
	HiddenSize        int     // width of the residual stream (embedding dimension)
	IntermediateSize  int     // width of the MLP's hidden layer
	NumAttentionHeads int     // heads per attention layer; HiddenSize is a multiple of it
	NumHiddenLayers   int     // encoder layers
	PatchSize         int     // side of a square patch, in pixels
	ImageSize         int     // side of the square input image, in pixels; a multiple of PatchSize
	NumChannels       int     // input channels (3 for RGB)
	HiddenAct         string  // MLP activation: one of quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu, silu
	LayerNormEps      float64 // epsilon of every LayerNorm
}

// Config is what this module reads from the config.json of a StableDiffusionSafetyChecker (a
// transformers CLIPConfig) or of a bare CLIPVisionConfig.
type Config struct {
	Vision VisionConfig
	// ProjectionDim is the output width of the visual projection (CLIPConfig.projection_dim).
	ProjectionDim int
	// TorchDType is the config's torch_dtype (or dtype, its newer name), e.g. "float32"; "" when absent.
	TorchDType string
}

// DefaultVisionConfig returns transformers' CLIPVisionConfig defaults (the vision tower of
// openai/clip-vit-base-patch32), which fill in any key a config.json leaves out.
func DefaultVisionConfig() VisionConfig {
	return VisionConfig{
		HiddenSize:        768,
		IntermediateSize:  3072,
		NumAttentionHeads: 12,
		NumHiddenLayers:   12,
		PatchSize:         32,
		ImageSize:         224,
		NumChannels:       3,
		HiddenAct:         "quick_gelu",
		LayerNormEps:      1e-5,
	}
}

// defaultProjectionDim is CLIPConfig's (and CLIPVisionConfig's) projection_dim default.
const defaultProjectionDim = 512

// PresetViTL14 returns the configuration of CompVis/stable-diffusion-safety-checker: a CLIP ViT-L/14
// vision tower at 224x224 with a 768-wide projection.
func PresetViTL14() Config {
	return Config{
		Vision: VisionConfig{
			HiddenSize:        1024,
			IntermediateSize:  4096,
			NumAttentionHeads: 16,
			NumHiddenLayers:   24,
			PatchSize:         14,
			ImageSize:         224,
			NumChannels:       3,
			HiddenAct:         "quick_gelu",
			LayerNormEps:      1e-5,
		},
		ProjectionDim: 768,
		TorchDType:    "float32",
	}
}

// activations lists the HiddenAct values Validate accepts.
var activations = []string{"quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"}

// rawVision is a vision config as written; nil fields (absent or null) take the defaults.
type rawVision struct {
	HiddenSize        *int     `json:"hidden_size"`
	IntermediateSize  *int     `json:"intermediate_size"`
	NumAttentionHeads *int     `json:"num_attention_heads"`
	NumHiddenLayers   *int     `json:"num_hidden_layers"`
	PatchSize         *int     `json:"patch_size"`
	ImageSize         *int     `json:"image_size"`
	NumChannels       *int     `json:"num_channels"`
	HiddenAct         *string  `json:"hidden_act"`
	LayerNormEps      *float64 `json:"layer_norm_eps"`
	ProjectionDim     *int     `json:"projection_dim"`
}

func (r *rawVision) apply(v *VisionConfig) {
	if r == nil {
		return
	}
	set := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	set(&v.HiddenSize, r.HiddenSize)
	set(&v.IntermediateSize, r.IntermediateSize)
	set(&v.NumAttentionHeads, r.NumAttentionHeads)
	set(&v.NumHiddenLayers, r.NumHiddenLayers)
	set(&v.PatchSize, r.PatchSize)
	set(&v.ImageSize, r.ImageSize)
	set(&v.NumChannels, r.NumChannels)
	if r.HiddenAct != nil {
		v.HiddenAct = *r.HiddenAct
	}
	if r.LayerNormEps != nil {
		v.LayerNormEps = *r.LayerNormEps
	}
}

// rawConfig is the top level of a CLIPConfig as written.
type rawConfig struct {
	ModelType        string          `json:"model_type"`
	ProjectionDim    *int            `json:"projection_dim"`
	TorchDType       *string         `json:"torch_dtype"`
	DType            json.RawMessage `json:"dtype"`
	VisionConfig     *rawVision      `json:"vision_config"`
	VisionConfigDict *rawVision      `json:"vision_config_dict"`
}

// ParseConfig parses a config.json: a CLIPConfig (model_type "clip", as a StableDiffusionSafetyChecker
// has), whose vision_config and top-level projection_dim are read, or a bare CLIPVisionConfig
// (model_type "clip_vision_model"). Missing or null keys take transformers' defaults
// ([DefaultVisionConfig], projection_dim 512). As transformers does, a legacy vision_config_dict, when
// present, replaces vision_config entirely (its missing keys take the defaults, not vision_config's
// values). The result is validated ([Config.Validate]); errors wrap [ErrConfig].
func ParseConfig(data []byte) (Config, error) { return parseConfig("config", data) }

// LoadConfig reads and parses the config.json at path; see [ParseConfig].
func LoadConfig(path string) (Config, error) {
	data, err := fileread.ReadFile(path, fileread.ConfigLimit)
	if err != nil {
		return Config{}, fmt.Errorf("checkpoint: %w", err)
	}
	return parseConfig(path, data)
}

func parseConfig(src string, data []byte) (Config, error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Config{}, fmt.Errorf("checkpoint: %s: %w: not a JSON object", src, ErrConfig)
	}
	var raw rawConfig
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("checkpoint: %s: %w: %w", src, ErrConfig, err)
	}
	cfg := Config{Vision: DefaultVisionConfig(), ProjectionDim: defaultProjectionDim}
	if raw.ProjectionDim != nil {
		cfg.ProjectionDim = *raw.ProjectionDim
	}
	switch raw.ModelType {
	case "", "clip", "clip_vision_model":
	default:
		return Config{}, fmt.Errorf("checkpoint: %s: %w: model_type %q is not a CLIP config (want clip or clip_vision_model)", src, ErrConfig, raw.ModelType)
	}
	switch {
	case raw.ModelType == "clip_vision_model" || (raw.ModelType == "" && raw.VisionConfig == nil && raw.VisionConfigDict == nil):
		// A bare CLIPVisionConfig: the vision keys are at the top level.
		var top rawVision
		if err := json.Unmarshal(data, &top); err != nil {
			return Config{}, fmt.Errorf("checkpoint: %s: %w: %w", src, ErrConfig, err)
		}
		top.apply(&cfg.Vision)
	case raw.VisionConfigDict != nil:
		raw.VisionConfigDict.apply(&cfg.Vision)
	default:
		raw.VisionConfig.apply(&cfg.Vision)
	}
	if raw.TorchDType != nil {
		cfg.TorchDType = *raw.TorchDType
	} else if len(raw.DType) > 0 {
		// transformers >= 4.56 writes "dtype"; only a string value names a dtype.
		var s string
		if json.Unmarshal(raw.DType, &s) == nil {
			cfg.TorchDType = s
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("checkpoint: %s: %w", src, err)
	}
	return cfg, nil
}

// Bounds of the sizes a config may declare: far above every published CLIP (ViT-bigG/14 has width
// 1664, MLP 8192, 48 layers; CLIP's text context is 77 tokens and its vocabulary 49408), and low
// enough that listing a model's keys and shapes from its config costs nothing before the checkpoint is
// compared with it.
const (
	maxWidth        = 1 << 14 // hidden_size, num_attention_heads, projection_dim
	maxIntermediate = 1 << 16 // intermediate_size
	maxLayers       = 1024    // num_hidden_layers
	maxImageSize    = 1 << 13 // image_size, patch_size
	maxPatches      = 1 << 16 // (image_size/patch_size)^2
	maxChannels     = 64      // num_channels
	maxVocab        = 1 << 21 // text vocab_size
	maxPositions    = 1 << 14 // text max_position_embeddings
	// maxLayerNormEps bounds layer_norm_eps: an epsilon comparable to the activations' variance
	// flattens every LayerNorm output towards its bias (the same embedding for every input), and one
	// beyond float32's range is Inf when the model computes in float32. Published models use 1e-5 or 1e-6.
	maxLayerNormEps = 1e-2
)

// sizeField is one size of a config with its upper bound.
type sizeField struct {
	name       string
	value, max int
}

// checkSizes checks that every size is in [1, max]; what ("" or "text ") starts the key names.
func checkSizes(what string, fields []sizeField) error {
	for _, f := range fields {
		if f.value <= 0 || f.value > f.max {
			return fmt.Errorf("%w: %s%s is %d, must be in [1, %d]", ErrConfig, what, f.name, f.value, f.max)
		}
	}
	return nil
}

// checkEps checks that layer_norm_eps is positive, at most maxLayerNormEps, and not zero in float32.
func checkEps(what string, eps float64) error {
	if !(eps > 0) || eps > maxLayerNormEps || float32(eps) == 0 {
		return fmt.Errorf("%w: %slayer_norm_eps %g must be in (0, %g] (and not zero in float32)", ErrConfig, what, eps, maxLayerNormEps)
	}
	return nil
}

// Validate checks that every size is in range (positive, and below bounds far above any published
// CLIP: at most 1024 layers, width 16384, 65536 patches), HiddenSize is a multiple of NumAttentionHeads,
// ImageSize a multiple of PatchSize, LayerNormEps in (0, 0.01] and HiddenAct one of
// quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu, silu. Errors wrap [ErrConfig].
func (c Config) Validate() error {
	v := c.Vision
	if err := checkSizes("", []sizeField{
		{"hidden_size", v.HiddenSize, maxWidth}, {"intermediate_size", v.IntermediateSize, maxIntermediate},
		{"num_attention_heads", v.NumAttentionHeads, maxWidth}, {"num_hidden_layers", v.NumHiddenLayers, maxLayers},
		{"patch_size", v.PatchSize, maxImageSize}, {"image_size", v.ImageSize, maxImageSize},
		{"num_channels", v.NumChannels, maxChannels}, {"projection_dim", c.ProjectionDim, maxWidth},
	}); err != nil {
		return err
	}
	if v.HiddenSize%v.NumAttentionHeads != 0 {
		return fmt.Errorf("%w: hidden_size %d is not divisible by num_attention_heads %d", ErrConfig, v.HiddenSize, v.NumAttentionHeads)
	}
	if v.ImageSize%v.PatchSize != 0 {
		return fmt.Errorf("%w: image_size %d is not divisible by patch_size %d", ErrConfig, v.ImageSize, v.PatchSize)
	}
	if n := v.NumPatches(); n > maxPatches {
		return fmt.Errorf("%w: image_size %d with patch_size %d makes %d patches, more than %d", ErrConfig,
			v.ImageSize, v.PatchSize, n, maxPatches)
	}
	if err := checkEps("", v.LayerNormEps); err != nil {
		return err
	}
	if !slices.Contains(activations, v.HiddenAct) {
		return fmt.Errorf("%w: hidden_act %q is not supported (want one of %v)", ErrConfig, v.HiddenAct, activations)
	}
	return nil
}

// NumPatches returns the number of image patches, (ImageSize/PatchSize)^2; the vision tower's
// sequence length is NumPatches()+1 (with the class token). It is 0 when PatchSize is not positive.
func (v VisionConfig) NumPatches() int {
	if v.PatchSize <= 0 {
		return 0
	}
	n := v.ImageSize / v.PatchSize
	return n * n
}

// HeadDim returns HiddenSize/NumAttentionHeads, the width of one attention head (0 when
// NumAttentionHeads is not positive).
func (v VisionConfig) HeadDim() int {
	if v.NumAttentionHeads <= 0 {
		return 0
	}
	return v.HiddenSize / v.NumAttentionHeads
}
