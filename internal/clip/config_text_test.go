package clip

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestParseTextConfig(t *testing.T) {
	cases := []struct {
		name string
		json string
		want func(c *TextModelConfig)
	}{
		{"CLIPConfig, defaults", `{"model_type": "clip"}`, func(c *TextModelConfig) {}},
		{"CLIPConfig", `{"model_type": "clip", "projection_dim": 768, "text_config": {"hidden_size": 768,
			"intermediate_size": 3072, "num_attention_heads": 12, "eos_token_id": 2, "hidden_act": "gelu",
			"layer_norm_eps": null}}`, func(c *TextModelConfig) {
			c.ProjectionDim = 768
			c.Text.HiddenSize, c.Text.IntermediateSize, c.Text.NumAttentionHeads = 768, 3072, 12
			c.Text.EOSTokenID, c.Text.HiddenAct = 2, "gelu"
		}},
		{"legacy text_config_dict replaces text_config", `{"model_type": "clip", "text_config": {"hidden_size": 64,
			"num_attention_heads": 2}, "text_config_dict": {"num_hidden_layers": 3}}`, func(c *TextModelConfig) {
			c.Text.NumHiddenLayers = 3
		}},
		{"bare CLIPTextConfig", `{"model_type": "clip_text_model", "hidden_size": 32, "num_attention_heads": 4,
			"projection_dim": 16, "vocab_size": 1000, "max_position_embeddings": 20, "dtype": "float16"}`,
			func(c *TextModelConfig) {
				c.ModelType = "clip_text_model"
				c.Text.HiddenSize, c.Text.NumAttentionHeads, c.Text.VocabSize, c.Text.MaxPositionEmbeddings = 32, 4, 1000, 20
				c.Text.ProjectionDim, c.ProjectionDim = 16, 16
				c.TorchDType = "float16"
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTextConfig([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			want := TextModelConfig{Text: DefaultTextConfig(), ProjectionDim: 512, ModelType: "clip"}
			tc.want(&want)
			got.Architectures = nil
			if got.Text != want.Text || got.ProjectionDim != want.ProjectionDim || got.ModelType != want.ModelType ||
				got.TorchDType != want.TorchDType {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParseTextConfigErrors(t *testing.T) {
	for _, s := range []string{
		`[]`,
		`{"model_type": "t5"}`,
		`{}`,
		`{"model_type": "clip", "text_config": {"hidden_size": 10, "num_attention_heads": 3}}`,
		`{"model_type": "clip", "text_config": {"eos_token_id": [2, 49407]}}`,
		`{"model_type": "clip", "text_config": {"hidden_act": "swish2"}}`,
		`{"model_type": "clip", "text_config": {"layer_norm_eps": -1}}`,
		`{"model_type": "clip", "text_config": {"max_position_embeddings": 1}}`,
		`{"model_type": "clip_text_model", "vocab_size": 0}`,
		`{"model_type": "clip", "projection_dim": 0}`,
		`{"model_type": "clip", "text_config": {"hidden_size": "big"}}`,
	} {
		if _, err := ParseTextConfig([]byte(s)); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", s, err)
		}
	}
}

// TestTextConfigGolden reads the configs transformers wrote for the golden tiny CLIP.
func TestTextConfigGolden(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "golden", "text")
	c, err := LoadTextConfig(filepath.Join(dir, "clip", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := TextConfig{EncoderConfig: EncoderConfig{HiddenSize: 16, IntermediateSize: 40, NumAttentionHeads: 4, NumHiddenLayers: 2,
		HiddenAct: "quick_gelu", LayerNormEps: 1e-5}, VocabSize: 49408, MaxPositionEmbeddings: 77, EOSTokenID: 49407, ProjectionDim: 512}
	if c.Text != want || c.ProjectionDim != 24 || c.ModelType != "clip" {
		t.Errorf("clip/config.json: %+v", c)
	}
	te, err := LoadTextConfig(filepath.Join(dir, "text_encoder_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if te.Text != want || te.ModelType != "clip_text_model" {
		t.Errorf("text_encoder_config.json: %+v", te)
	}
	e2, err := LoadTextConfig(filepath.Join(dir, "config_eos2.json"))
	if err != nil || e2.Text.EOSTokenID != 2 {
		t.Errorf("config_eos2.json: %+v, %v", e2, err)
	}
	// A safety checker's config.json parses too (its text_config is unused there).
	if _, err := LoadTextConfig(filepath.Join("..", "..", "testdata", "golden", "models", "tiny_quickgelu", "config.json")); err != nil {
		t.Error(err)
	}
}
