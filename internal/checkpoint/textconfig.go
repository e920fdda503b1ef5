package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/sdsafety/safety/internal/fileread"
)

// TextConfig is the part of transformers' CLIPTextConfig the text tower needs.
type TextConfig struct {
	VocabSize             int     // rows of the token embedding (49408 for CLIP's tokenizer)
	HiddenSize            int     // width of the residual stream
	IntermediateSize      int     // width of the MLP's hidden layer
	NumAttentionHeads     int     // heads per attention layer; HiddenSize is a multiple of it
	NumHiddenLayers       int     // encoder layers
	MaxPositionEmbeddings int     // context length in tokens (77)
	HiddenAct             string  // MLP activation, as for the vision tower
	LayerNormEps          float64 // epsilon of every LayerNorm
	// EOSTokenID selects the pooled position: with 2 (configs written before transformers PR #24773,
	// e.g. openai/clip-vit-large-patch14's) the position of the largest input id, otherwise the first
	// position holding EOSTokenID (position 0 when none does).
	EOSTokenID int
	// ProjectionDim is CLIPTextConfig.projection_dim: the text projection's width in a bare
	// CLIPTextModelWithProjection. In a CLIPConfig the top-level projection_dim counts instead.
	ProjectionDim int
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

// DefaultTextConfig returns transformers' CLIPTextConfig defaults (the text tower of
// openai/clip-vit-base-patch32), which fill in any key a config.json leaves out.
func DefaultTextConfig() TextConfig {
	return TextConfig{
		VocabSize:             49408,
		HiddenSize:            512,
		IntermediateSize:      2048,
		NumAttentionHeads:     8,
		NumHiddenLayers:       12,
		MaxPositionEmbeddings: 77,
		HiddenAct:             "quick_gelu",
		LayerNormEps:          1e-5,
		EOSTokenID:            49407,
		ProjectionDim:         512,
	}
}

// rawText is a text config as written; nil fields (absent or null) take the defaults.
type rawText struct {
	VocabSize             *int            `json:"vocab_size"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	HiddenAct             *string         `json:"hidden_act"`
	LayerNormEps          *float64        `json:"layer_norm_eps"`
	EOSTokenID            json.RawMessage `json:"eos_token_id"`
	ProjectionDim         *int            `json:"projection_dim"`
}

func (r *rawText) apply(t *TextConfig) error {
	if r == nil {
		return nil
	}
	set := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	set(&t.VocabSize, r.VocabSize)
	set(&t.HiddenSize, r.HiddenSize)
	set(&t.IntermediateSize, r.IntermediateSize)
	set(&t.NumAttentionHeads, r.NumAttentionHeads)
	set(&t.NumHiddenLayers, r.NumHiddenLayers)
	set(&t.MaxPositionEmbeddings, r.MaxPositionEmbeddings)
	set(&t.ProjectionDim, r.ProjectionDim)
	if r.HiddenAct != nil {
		t.HiddenAct = *r.HiddenAct
	}
	if r.LayerNormEps != nil {
		t.LayerNormEps = *r.LayerNormEps
	}
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

// rawTextConfig is the top level of a CLIPConfig or CLIPTextConfig as written.
type rawTextConfig struct {
	ModelType      string          `json:"model_type"`
	Architectures  []string        `json:"architectures"`
	ProjectionDim  *int            `json:"projection_dim"`
	TorchDType     *string         `json:"torch_dtype"`
	DType          json.RawMessage `json:"dtype"`
	TextConfig     *rawText        `json:"text_config"`
	TextConfigDict *rawText        `json:"text_config_dict"`
}

// ParseTextConfig parses a config.json holding a CLIP text tower: a CLIPConfig (model_type "clip"),
// whose text_config and top-level projection_dim are read, or a bare CLIPTextConfig (model_type
// "clip_text_model", keys at the top level). Missing or null keys take transformers' defaults
// ([DefaultTextConfig], projection_dim 512); a legacy text_config_dict, when present, replaces
// text_config entirely, as transformers does. The result is validated; errors wrap [ErrConfig].
func ParseTextConfig(data []byte) (TextModelConfig, error) { return parseTextConfig("config", data) }

// LoadTextConfig reads and parses the config.json at path; see [ParseTextConfig].
func LoadTextConfig(path string) (TextModelConfig, error) {
	data, err := fileread.ReadFile(path, fileread.ConfigLimit)
	if err != nil {
		return TextModelConfig{}, fmt.Errorf("checkpoint: %w", err)
	}
	return parseTextConfig(path, data)
}

func parseTextConfig(src string, data []byte) (TextModelConfig, error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return TextModelConfig{}, fmt.Errorf("checkpoint: %s: %w: not a JSON object", src, ErrConfig)
	}
	var raw rawTextConfig
	if err := json.Unmarshal(data, &raw); err != nil {
		return TextModelConfig{}, fmt.Errorf("checkpoint: %s: %w: %w", src, ErrConfig, err)
	}
	cfg := TextModelConfig{Text: DefaultTextConfig(), ProjectionDim: defaultProjectionDim, Architectures: raw.Architectures}
	var err error
	switch raw.ModelType {
	case "clip", "":
		if raw.ModelType == "" && raw.TextConfig == nil && raw.TextConfigDict == nil {
			return TextModelConfig{}, fmt.Errorf("checkpoint: %s: %w: neither model_type nor text_config: not a CLIP config", src, ErrConfig)
		}
		cfg.ModelType = "clip"
		if raw.ProjectionDim != nil {
			cfg.ProjectionDim = *raw.ProjectionDim
		}
		if raw.TextConfigDict != nil {
			err = raw.TextConfigDict.apply(&cfg.Text)
		} else {
			err = raw.TextConfig.apply(&cfg.Text)
		}
	case "clip_text_model":
		cfg.ModelType = raw.ModelType
		var top rawText
		if err := json.Unmarshal(data, &top); err != nil {
			return TextModelConfig{}, fmt.Errorf("checkpoint: %s: %w: %w", src, ErrConfig, err)
		}
		err = top.apply(&cfg.Text)
		cfg.ProjectionDim = cfg.Text.ProjectionDim
	default:
		return TextModelConfig{}, fmt.Errorf("checkpoint: %s: %w: model_type %q has no CLIP text tower (want clip or clip_text_model)",
			src, ErrConfig, raw.ModelType)
	}
	if err != nil {
		return TextModelConfig{}, fmt.Errorf("checkpoint: %s: %w", src, err)
	}
	if raw.TorchDType != nil {
		cfg.TorchDType = *raw.TorchDType
	} else if len(raw.DType) > 0 {
		var s string
		if json.Unmarshal(raw.DType, &s) == nil {
			cfg.TorchDType = s
		}
	}
	if err := cfg.Validate(); err != nil {
		return TextModelConfig{}, fmt.Errorf("checkpoint: %s: %w", src, err)
	}
	return cfg, nil
}

// Validate checks that every size is in range (see [Config.Validate]), HiddenSize is a multiple of NumAttentionHeads,
// LayerNormEps is in (0, 0.01], HiddenAct is supported and EOSTokenID is a valid id.
// Errors wrap [ErrConfig].
func (c TextModelConfig) Validate() error {
	t := c.Text
	if err := checkSizes("text ", []sizeField{
		{"vocab_size", t.VocabSize, maxVocab}, {"hidden_size", t.HiddenSize, maxWidth},
		{"intermediate_size", t.IntermediateSize, maxIntermediate},
		{"num_attention_heads", t.NumAttentionHeads, maxWidth}, {"num_hidden_layers", t.NumHiddenLayers, maxLayers},
		{"max_position_embeddings", t.MaxPositionEmbeddings, maxPositions}, {"projection_dim", c.ProjectionDim, maxWidth},
	}); err != nil {
		return err
	}
	if t.HiddenSize%t.NumAttentionHeads != 0 {
		return fmt.Errorf("%w: text hidden_size %d is not divisible by num_attention_heads %d", ErrConfig,
			t.HiddenSize, t.NumAttentionHeads)
	}
	if t.MaxPositionEmbeddings < 2 {
		return fmt.Errorf("%w: text max_position_embeddings %d leaves no room for start and end tokens", ErrConfig,
			t.MaxPositionEmbeddings)
	}
	if err := checkEps("text ", t.LayerNormEps); err != nil {
		return err
	}
	if !slices.Contains(activations, t.HiddenAct) {
		return fmt.Errorf("%w: text hidden_act %q is not supported (want one of %v)", ErrConfig, t.HiddenAct, activations)
	}
	if t.EOSTokenID < 0 {
		return fmt.Errorf("%w: text eos_token_id %d is negative", ErrConfig, t.EOSTokenID)
	}
	return nil
}

// HeadDim returns HiddenSize/NumAttentionHeads (0 when NumAttentionHeads is not positive).
func (t TextConfig) HeadDim() int {
	if t.NumAttentionHeads <= 0 {
		return 0
	}
	return t.HiddenSize / t.NumAttentionHeads
}
