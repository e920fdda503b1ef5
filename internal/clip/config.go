package clip

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/sdsafety/safety/internal/fileread"
)

// ErrConfig reports a config.json that is not JSON, has wrongly typed fields or fails validation.
var ErrConfig = errors.New("invalid config")

// EncoderConfig is the part of a CLIP tower's configuration the transformer encoder needs; the
// vision and the text configs both embed it.
type EncoderConfig struct {
	HiddenSize        int     // D: width of the residual stream
	IntermediateSize  int     // I: width of the MLP's hidden layer
	NumAttentionHeads int     // H: heads per attention layer; HiddenSize is a multiple of it
	NumHiddenLayers   int     // L: encoder layers
	HiddenAct         string  // MLP activation: one of quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu, silu
	LayerNormEps      float64 // epsilon of every LayerNorm
}

// HeadDim returns HiddenSize/NumAttentionHeads, the width of one attention head (0 when
// NumAttentionHeads is not positive).
func (e EncoderConfig) HeadDim() int {
	if e.NumAttentionHeads <= 0 {
		return 0
	}
	return e.HiddenSize / e.NumAttentionHeads
}

// VisionConfig is the part of transformers' CLIPVisionConfig the vision tower needs.
type VisionConfig struct {
	EncoderConfig
	PatchSize   int // side of a square patch, in pixels
	ImageSize   int // side of the square input image, in pixels; a multiple of PatchSize
	NumChannels int // input channels (3 for RGB)
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

// TextConfig is the part of transformers' CLIPTextConfig the text tower needs.
type TextConfig struct {
	EncoderConfig
	VocabSize             int // rows of the token embedding (49408 for CLIP's tokenizer)
	MaxPositionEmbeddings int // context length in tokens (77)
	// EOSTokenID selects the pooled position: with 2 (configs written before transformers PR #24773,
	// e.g. openai/clip-vit-large-patch14's) the position of the largest input id, otherwise the first
	// position holding EOSTokenID (position 0 when none does).
	EOSTokenID int
	// ProjectionDim is CLIPTextConfig.projection_dim: the text projection's width in a bare
	// CLIPTextModelWithProjection. In a CLIPConfig the top-level projection_dim counts instead.
	ProjectionDim int
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

// TextModelConfig is what this module reads from the config.json of a model holding a CLIP text
// tower: a CLIPConfig (model_type "clip": openai/clip-vit-large-patch14) or a bare CLIPTextConfig
// (model_type "clip_text_model": a Stable Diffusion pipeline's text_encoder/).
type TextModelConfig struct {
	Text TextConfig
	// ProjectionDim is the width the text projection maps to: CLIPConfig.projection_dim (default
	// 512), or Text.ProjectionDim for a bare text config.
	ProjectionDim int
	// ModelType is "clip" or "clip_text_model".
	ModelType string
	// Architectures is the config's architectures list (e.g. CLIPModel, CLIPTextModel).
	Architectures []string
	// TorchDType is the config's torch_dtype (or dtype), "" when absent.
	TorchDType string
}

// defaultEncoder is the encoder part of transformers' CLIPVisionConfig defaults.
func defaultEncoder(width, layers int) EncoderConfig {
	return EncoderConfig{HiddenSize: width, IntermediateSize: 4 * width, NumAttentionHeads: width / 64,
		NumHiddenLayers: layers, HiddenAct: "quick_gelu", LayerNormEps: 1e-5}
}

// DefaultVisionConfig returns transformers' CLIPVisionConfig defaults (the vision tower of
// openai/clip-vit-base-patch32), which fill in any key a config.json leaves out.
func DefaultVisionConfig() VisionConfig {
	return VisionConfig{EncoderConfig: defaultEncoder(768, 12), PatchSize: 32, ImageSize: 224, NumChannels: 3}
}

// DefaultTextConfig returns transformers' CLIPTextConfig defaults (the text tower of
// openai/clip-vit-base-patch32), which fill in any key a config.json leaves out.
func DefaultTextConfig() TextConfig {
	return TextConfig{EncoderConfig: defaultEncoder(512, 12), VocabSize: 49408, MaxPositionEmbeddings: 77,
		EOSTokenID: 49407, ProjectionDim: 512}
}

// defaultProjectionDim is CLIPConfig's (and CLIPVisionConfig's) projection_dim default.
const defaultProjectionDim = 512

// PresetViTL14 returns the configuration of CompVis/stable-diffusion-safety-checker: a CLIP ViT-L/14
// vision tower at 224x224 with a 768-wide projection.
func PresetViTL14() Config {
	return Config{
		Vision:        VisionConfig{EncoderConfig: defaultEncoder(1024, 24), PatchSize: 14, ImageSize: 224, NumChannels: 3},
		ProjectionDim: 768,
		TorchDType:    "float32",
	}
}

// PresetCLIPLText returns the text side of openai/clip-vit-large-patch14 (the CLIP the safety
// checker's vision tower comes from, and Stable Diffusion v1's text encoder): 12 layers of width 768,
// the legacy eos_token_id 2 (pool at the largest id), a 768-wide projection.
func PresetCLIPLText() TextModelConfig {
	return TextModelConfig{
		Text: TextConfig{EncoderConfig: defaultEncoder(768, 12), VocabSize: 49408, MaxPositionEmbeddings: 77,
			EOSTokenID: 2, ProjectionDim: 768},
		ProjectionDim: 768,
		ModelType:     "clip",
		Architectures: []string{"CLIPModel"},
		TorchDType:    "float32",
	}
}

// activations lists the HiddenAct values validation accepts.
var activations = []string{"quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu"}

// rawEncoder is the encoder part of a tower config as written; nil fields (absent or null) keep
// the defaults.
type rawEncoder struct {
	HiddenSize        *int     `json:"hidden_size"`
	IntermediateSize  *int     `json:"intermediate_size"`
	NumAttentionHeads *int     `json:"num_attention_heads"`
	NumHiddenLayers   *int     `json:"num_hidden_layers"`
	HiddenAct         *string  `json:"hidden_act"`
	LayerNormEps      *float64 `json:"layer_norm_eps"`
}

// set copies *src into *dst when src is not nil.
func set[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

func (r *rawEncoder) apply(e *EncoderConfig) {
	set(&e.HiddenSize, r.HiddenSize)
	set(&e.IntermediateSize, r.IntermediateSize)
	set(&e.NumAttentionHeads, r.NumAttentionHeads)
	set(&e.NumHiddenLayers, r.NumHiddenLayers)
	set(&e.HiddenAct, r.HiddenAct)
	set(&e.LayerNormEps, r.LayerNormEps)
}

// rawVision is a vision config as written.
type rawVision struct {
	rawEncoder
	PatchSize   *int `json:"patch_size"`
	ImageSize   *int `json:"image_size"`
	NumChannels *int `json:"num_channels"`
}

func (r *rawVision) apply(v *VisionConfig) error {
	if r == nil {
		return nil
	}
	r.rawEncoder.apply(&v.EncoderConfig)
	set(&v.PatchSize, r.PatchSize)
	set(&v.ImageSize, r.ImageSize)
	set(&v.NumChannels, r.NumChannels)
	return nil
}

// rawText is a text config as written.
type rawText struct {
	rawEncoder
	VocabSize             *int            `json:"vocab_size"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
	ProjectionDim         *int            `json:"projection_dim"`
}

func (r *rawText) apply(t *TextConfig) error {
	if r == nil {
		return nil
	}
	r.rawEncoder.apply(&t.EncoderConfig)
	set(&t.VocabSize, r.VocabSize)
	set(&t.MaxPositionEmbeddings, r.MaxPositionEmbeddings)
	set(&t.ProjectionDim, r.ProjectionDim)
	if e := bytes.TrimSpace(r.EOSTokenID); len(e) > 0 && !bytes.Equal(e, []byte("null")) {
		var id int
		if err := json.Unmarshal(e, &id); err != nil {
			// transformers accepts a list here, but CLIPTextTransformer's pooling compares input_ids
			// with it element-wise and cannot use one.
			return fmt.Errorf("%w: eos_token_id %s is not one integer", ErrConfig, e)
		}
		t.EOSTokenID = id
	}
	return nil
}

// rawConfig is the top level of a CLIPConfig (or of a bare tower config) as written.
type rawConfig struct {
	ModelType        string          `json:"model_type"`
	Architectures    []string        `json:"architectures"`
	ProjectionDim    *int            `json:"projection_dim"`
	TorchDType       *string         `json:"torch_dtype"`
	DType            json.RawMessage `json:"dtype"`
	VisionConfig     *rawVision      `json:"vision_config"`
	VisionConfigDict *rawVision      `json:"vision_config_dict"`
	TextConfig       *rawText        `json:"text_config"`
	TextConfigDict   *rawText        `json:"text_config_dict"`
}

// parseRaw is the one config.json parser: a JSON object, decoded into the top level.
func parseRaw(src string, data []byte) (rawConfig, error) {
	var raw rawConfig
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return raw, fmt.Errorf("clip: %s: %w: not a JSON object", src, ErrConfig)
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return raw, fmt.Errorf("clip: %s: %w: %w", src, ErrConfig, err)
	}
	return raw, nil
}

// torchDType is the config's torch_dtype, or its newer name dtype (transformers >= 4.56; only a
// string value names a dtype), "" when absent.
func (r *rawConfig) torchDType() string {
	if r.TorchDType != nil {
		return *r.TorchDType
	}
	var s string
	if len(r.DType) > 0 && json.Unmarshal(r.DType, &s) == nil {
		return s
	}
	return ""
}

// tower applies a tower's config to cfg: the bare config at the top level of data (bare), else the
// legacy *_config_dict, which replaces *_config entirely as transformers does, else *_config.
func tower[R any, C any, P interface {
	*R
	apply(*C) error
}](data []byte, bare bool, dict, cfg P, dst *C) error {
	switch {
	case bare:
		top := P(new(R))
		if err := json.Unmarshal(data, top); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return top.apply(dst)
	case dict != nil:
		return dict.apply(dst)
	default:
		return cfg.apply(dst)
	}
}

// ParseConfig parses a config.json: a CLIPConfig (model_type "clip", as a StableDiffusionSafetyChecker
// has), whose vision_config and top-level projection_dim are read, or a bare CLIPVisionConfig
// (model_type "clip_vision_model"). Missing or null keys take transformers' defaults
// ([DefaultVisionConfig], projection_dim 512). As transformers does, a legacy vision_config_dict, when
// present, replaces vision_config entirely (its missing keys take the defaults, not vision_config's
// values). The result is validated ([Config.Validate]); errors wrap [ErrConfig].
func ParseConfig(data []byte) (Config, error) { return parseConfig("config", data) }

// LoadConfig reads and parses the config.json at path; see [ParseConfig].
func LoadConfig(path string) (Config, error) { return loadFile(path, parseConfig) }

// loadFile reads the config file at path (bounded by fileread.ConfigLimit) and parses it with parse,
// which names the file in its errors.
func loadFile[C any](path string, parse func(src string, data []byte) (C, error)) (C, error) {
	data, err := fileread.ReadFile(path, fileread.ConfigLimit)
	if err != nil {
		var zero C
		return zero, fmt.Errorf("clip: %w", err)
	}
	return parse(path, data)
}

func parseConfig(src string, data []byte) (Config, error) {
	raw, err := parseRaw(src, data)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{Vision: DefaultVisionConfig(), ProjectionDim: defaultProjectionDim, TorchDType: raw.torchDType()}
	set(&cfg.ProjectionDim, raw.ProjectionDim)
	switch raw.ModelType {
	case "", "clip", "clip_vision_model":
	default:
		return Config{}, fmt.Errorf("clip: %s: %w: model_type %q is not a CLIP config (want clip or clip_vision_model)", src, ErrConfig, raw.ModelType)
	}
	// A bare CLIPVisionConfig has the vision keys at the top level.
	bare := raw.ModelType == "clip_vision_model" || (raw.ModelType == "" && raw.VisionConfig == nil && raw.VisionConfigDict == nil)
	if err := tower(data, bare, raw.VisionConfigDict, raw.VisionConfig, &cfg.Vision); err != nil {
		return Config{}, fmt.Errorf("clip: %s: %w", src, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("clip: %s: %w", src, err)
	}
	return cfg, nil
}

// ParseTextConfig parses a config.json holding a CLIP text tower: a CLIPConfig (model_type "clip"),
// whose text_config and top-level projection_dim are read, or a bare CLIPTextConfig (model_type
// "clip_text_model", keys at the top level). Missing or null keys take transformers' defaults
// ([DefaultTextConfig], projection_dim 512); a legacy text_config_dict, when present, replaces
// text_config entirely, as transformers does. The result is validated; errors wrap [ErrConfig].
func ParseTextConfig(data []byte) (TextModelConfig, error) { return parseTextConfig("config", data) }

// LoadTextConfig reads and parses the config.json at path; see [ParseTextConfig].
func LoadTextConfig(path string) (TextModelConfig, error) { return loadFile(path, parseTextConfig) }

func parseTextConfig(src string, data []byte) (TextModelConfig, error) {
	raw, err := parseRaw(src, data)
	if err != nil {
		return TextModelConfig{}, err
	}
	cfg := TextModelConfig{Text: DefaultTextConfig(), ProjectionDim: defaultProjectionDim, Architectures: raw.Architectures,
		ModelType: raw.ModelType, TorchDType: raw.torchDType()}
	switch raw.ModelType {
	case "clip", "":
		if raw.ModelType == "" && raw.TextConfig == nil && raw.TextConfigDict == nil {
			return TextModelConfig{}, fmt.Errorf("clip: %s: %w: neither model_type nor text_config: not a CLIP config", src, ErrConfig)
		}
		cfg.ModelType = "clip"
		set(&cfg.ProjectionDim, raw.ProjectionDim)
	case "clip_text_model":
	default:
		return TextModelConfig{}, fmt.Errorf("clip: %s: %w: model_type %q has no CLIP text tower (want clip or clip_text_model)",
			src, ErrConfig, raw.ModelType)
	}
	bare := raw.ModelType == "clip_text_model"
	if err := tower(data, bare, raw.TextConfigDict, raw.TextConfig, &cfg.Text); err != nil {
		return TextModelConfig{}, fmt.Errorf("clip: %s: %w", src, err)
	}
	if bare {
		cfg.ProjectionDim = cfg.Text.ProjectionDim
	}
	if err := cfg.Validate(); err != nil {
		return TextModelConfig{}, fmt.Errorf("clip: %s: %w", src, err)
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

// validate is the one validator of the encoder part of a tower config, after the tower's own sizes
// (extra): every size in range, HiddenSize a multiple of NumAttentionHeads, LayerNormEps in (0,
// 0.01] and not zero in float32, HiddenAct supported. what ("" or "text ") starts the key names.
func (e EncoderConfig) validate(what string, extra ...sizeField) error {
	if err := checkSizes(what, append([]sizeField{
		{"hidden_size", e.HiddenSize, maxWidth}, {"intermediate_size", e.IntermediateSize, maxIntermediate},
		{"num_attention_heads", e.NumAttentionHeads, maxWidth}, {"num_hidden_layers", e.NumHiddenLayers, maxLayers},
	}, extra...)); err != nil {
		return err
	}
	if e.HiddenSize%e.NumAttentionHeads != 0 {
		return fmt.Errorf("%w: %shidden_size %d is not divisible by num_attention_heads %d", ErrConfig, what,
			e.HiddenSize, e.NumAttentionHeads)
	}
	if eps := e.LayerNormEps; !(eps > 0) || eps > maxLayerNormEps || float32(eps) == 0 {
		return fmt.Errorf("%w: %slayer_norm_eps %g must be in (0, %g] (and not zero in float32)", ErrConfig, what, eps, maxLayerNormEps)
	}
	if !slices.Contains(activations, e.HiddenAct) {
		return fmt.Errorf("%w: %shidden_act %q is not supported (want one of %v)", ErrConfig, what, e.HiddenAct, activations)
	}
	return nil
}

// Validate checks that every size is in range (positive, and below bounds far above any published
// CLIP: at most 1024 layers, width 16384, 65536 patches), HiddenSize is a multiple of NumAttentionHeads,
// ImageSize a multiple of PatchSize, LayerNormEps in (0, 0.01] and HiddenAct one of
// quick_gelu, gelu, gelu_new, gelu_pytorch_tanh, relu, silu. Errors wrap [ErrConfig].
func (c Config) Validate() error {
	v := c.Vision
	if err := v.validate("", sizeField{"patch_size", v.PatchSize, maxImageSize}, sizeField{"image_size", v.ImageSize, maxImageSize},
		sizeField{"num_channels", v.NumChannels, maxChannels}, sizeField{"projection_dim", c.ProjectionDim, maxWidth}); err != nil {
		return err
	}
	if v.ImageSize%v.PatchSize != 0 {
		return fmt.Errorf("%w: image_size %d is not divisible by patch_size %d", ErrConfig, v.ImageSize, v.PatchSize)
	}
	if n := v.NumPatches(); n > maxPatches {
		return fmt.Errorf("%w: image_size %d with patch_size %d makes %d patches, more than %d", ErrConfig,
			v.ImageSize, v.PatchSize, n, maxPatches)
	}
	return nil
}

// Validate checks the text tower as [Config.Validate] checks the vision tower (sizes in range,
// HiddenSize a multiple of NumAttentionHeads, LayerNormEps in (0, 0.01], HiddenAct supported), a
// context of at least 2 positions and a non-negative EOSTokenID. Errors wrap [ErrConfig].
func (c TextModelConfig) Validate() error {
	t := c.Text
	if err := t.validate("text ", sizeField{"vocab_size", t.VocabSize, maxVocab},
		sizeField{"max_position_embeddings", t.MaxPositionEmbeddings, maxPositions},
		sizeField{"projection_dim", c.ProjectionDim, maxWidth}); err != nil {
		return err
	}
	if t.MaxPositionEmbeddings < 2 {
		return fmt.Errorf("%w: text max_position_embeddings %d leaves no room for start and end tokens", ErrConfig,
			t.MaxPositionEmbeddings)
	}
	if t.EOSTokenID < 0 {
		return fmt.Errorf("%w: text eos_token_id %d is negative", ErrConfig, t.EOSTokenID)
	}
	return nil
}
