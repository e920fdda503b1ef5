package clip

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfigDefaults(t *testing.T) {
	def := Config{Vision: DefaultVisionConfig(), ProjectionDim: 512}
	for _, c := range []struct {
		name string
		json string
		want Config
	}{
		{"empty object", `{}`, def},
		{"clip without vision_config", `{"model_type": "clip"}`, def},
		{"null vision_config", `{"model_type": "clip", "vision_config": null}`, def},
		{"partial vision_config", `{"model_type": "clip", "projection_dim": 768, "torch_dtype": "float16",
			"vision_config": {"hidden_size": 1024, "num_attention_heads": 16, "layer_norm_eps": null}}`,
			Config{Vision: func() VisionConfig {
				v := DefaultVisionConfig()
				v.HiddenSize, v.NumAttentionHeads = 1024, 16
				return v
			}(),
				ProjectionDim: 768, TorchDType: "float16"}},
		{"newer dtype key", `{"model_type": "clip", "dtype": "bfloat16"}`, Config{Vision: DefaultVisionConfig(), ProjectionDim: 512, TorchDType: "bfloat16"}},
		{"bare vision config", `{"model_type": "clip_vision_model", "hidden_size": 64, "num_attention_heads": 4,
			"hidden_act": "gelu", "projection_dim": 32, "image_size": 64, "patch_size": 16}`,
			Config{Vision: VisionConfig{EncoderConfig: EncoderConfig{HiddenSize: 64, IntermediateSize: 3072, NumAttentionHeads: 4,
				NumHiddenLayers: 12, HiddenAct: "gelu", LayerNormEps: 1e-5}, PatchSize: 16, ImageSize: 64, NumChannels: 3},
				ProjectionDim: 32}},
		// The real CompVis/stable-diffusion-safety-checker config: vision_config_dict overrides vision_config.
		{"legacy vision_config_dict", `{"model_type": "clip", "projection_dim": 768, "torch_dtype": "float32",
			"vision_config": {"hidden_size": 768, "image_size": 336, "patch_size": 32, "hidden_act": "gelu"},
			"vision_config_dict": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
				"num_hidden_layers": 24, "patch_size": 14}}`, PresetViTL14()},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(c.json))
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, c := range []struct {
		name, json, want string
	}{
		{"not JSON", `model_type: clip`, "not a JSON object"},
		{"empty", ``, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"array", `[1]`, "not a JSON object"},
		{"truncated", `{"model_type": "clip"`, "unexpected end"},
		{"trailing garbage", `{} {}`, "invalid character"},
		{"wrong type", `{"vision_config": {"hidden_size": "big"}}`, "hidden_size"},
		{"float size", `{"vision_config": {"hidden_size": 1024.5}}`, "hidden_size"},
		{"unknown activation", `{"vision_config": {"hidden_act": "swishy"}}`, `hidden_act "swishy"`},
		{"heads do not divide", `{"vision_config": {"hidden_size": 100, "num_attention_heads": 3}}`, "not divisible by num_attention_heads"},
		{"patch does not divide", `{"vision_config": {"image_size": 225}}`, "not divisible by patch_size"},
		{"zero layers", `{"vision_config": {"num_hidden_layers": 0}}`, "num_hidden_layers is 0"},
		{"negative projection", `{"projection_dim": -1}`, "projection_dim is -1"},
		{"zero eps", `{"vision_config": {"layer_norm_eps": 0}}`, "layer_norm_eps"},
		{"other model", `{"model_type": "bert"}`, `model_type "bert"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.json))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v: want ErrConfig containing %q", err, c.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	p := writeTemp(t, "config.json", []byte(`{"vision_config": {"hidden_act": "relu"}}`))
	cfg, err := LoadConfig(p)
	if err != nil || cfg.Vision.HiddenAct != "relu" {
		t.Fatalf("%+v %v", cfg, err)
	}
	bad := writeTemp(t, "config.json", []byte(`{"vision_config": {"hidden_act": "tanh"}}`))
	if _, err := LoadConfig(bad); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("error %v does not name the file", err)
	}
	if _, err := LoadConfig(bad + ".missing"); err == nil {
		t.Fatal("missing file")
	}
}

func TestPresetViTL14(t *testing.T) {
	p := PresetViTL14()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	v := p.Vision
	if v.HiddenSize != 1024 || v.IntermediateSize != 4096 || v.NumAttentionHeads != 16 || v.NumHiddenLayers != 24 ||
		v.PatchSize != 14 || v.ImageSize != 224 || v.HiddenAct != "quick_gelu" || v.LayerNormEps != 1e-5 || p.ProjectionDim != 768 {
		t.Fatalf("%+v", p)
	}
	if v.NumPatches() != 256 || v.HeadDim() != 64 {
		t.Fatalf("patches %d head dim %d", v.NumPatches(), v.HeadDim())
	}
	if (VisionConfig{}).NumPatches() != 0 || (VisionConfig{}).HeadDim() != 0 {
		t.Fatal("zero config helpers")
	}
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFixtureConfig reads the config.json of the golden tiny checker (internal/checkpoint's
// TestFixtureFind checks its weights against these numbers).
func TestFixtureConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "testdata", "golden", "models", "tiny_quickgelu", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Vision: VisionConfig{EncoderConfig: EncoderConfig{HiddenSize: 32, IntermediateSize: 37, NumAttentionHeads: 4,
			NumHiddenLayers: 2, HiddenAct: "quick_gelu", LayerNormEps: 1e-5}, PatchSize: 14, ImageSize: 224, NumChannels: 3},
		ProjectionDim: 24, TorchDType: "float32",
	}
	if cfg != want || cfg.Vision.NumPatches() != 256 {
		t.Fatalf("config %+v, want %+v", cfg, want)
	}
}

// TestPresetsValidate: every preset passes the one validator and has 64-wide heads.
func TestPresetsValidate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		validate func() error
		enc      EncoderConfig
		layers   int
	}{
		{"ViT-L/14", PresetViTL14().Validate, PresetViTL14().Vision.EncoderConfig, 24},
		{"CLIP-L text", PresetCLIPLText().Validate, PresetCLIPLText().Text.EncoderConfig, 12},
	} {
		if err := tc.validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if tc.enc.HeadDim() != 64 || tc.enc.NumHiddenLayers != tc.layers {
			t.Errorf("%s: head dim %d, %d layers", tc.name, tc.enc.HeadDim(), tc.enc.NumHiddenLayers)
		}
	}
	if p := PresetCLIPLText(); p.Text.EOSTokenID != 2 || p.ProjectionDim != 768 || p.Text.HiddenSize != 768 {
		t.Errorf("CLIP-L text preset %+v", p)
	}
}
