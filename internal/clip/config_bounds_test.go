package clip

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestConfigBounds covers issue 13 items 2 and 5 (config side): sizes far beyond any CLIP, and
// layer_norm_eps values that flatten or overflow every LayerNorm, are refused by both config parsers
// at once, and the published values still parse.
func TestConfigBounds(t *testing.T) {
	vision := func(kv string) string { return `{"model_type": "clip", "vision_config": {` + kv + `}}` }
	text := func(kv string) string { return `{"model_type": "clip", "text_config": {` + kv + `}}` }
	for _, tc := range []struct {
		name, json, want string
		textParser       bool
	}{
		{"a million layers", vision(`"num_hidden_layers": 1000000`), "num_hidden_layers is 1000000", false},
		{"2^31 layers", vision(`"num_hidden_layers": 2147483647`), "num_hidden_layers", false},
		{"1025 layers", vision(`"num_hidden_layers": 1025`), "must be in [1, 1024]", false},
		{"huge hidden_size", vision(`"hidden_size": 1048576, "num_attention_heads": 1`), "hidden_size", false},
		{"huge intermediate_size", vision(`"intermediate_size": 1000000000`), "intermediate_size", false},
		{"huge image_size", vision(`"image_size": 1048576, "patch_size": 1`), "image_size", false},
		{"too many patches", vision(`"image_size": 4096, "patch_size": 2`), "patches", false},
		{"huge num_channels", vision(`"num_channels": 100000`), "num_channels", false},
		{"huge projection_dim", `{"model_type": "clip", "projection_dim": 100000000}`, "projection_dim", false},
		{"eps Inf in float32", vision(`"layer_norm_eps": 1e39`), "layer_norm_eps", false},
		{"eps 1e30", vision(`"layer_norm_eps": 1e30`), "layer_norm_eps", false},
		{"eps 1", vision(`"layer_norm_eps": 1`), "layer_norm_eps", false},
		{"eps zero in float32", vision(`"layer_norm_eps": 1e-50`), "layer_norm_eps", false},
		{"text: a million layers", text(`"num_hidden_layers": 1000000`), "text num_hidden_layers", true},
		{"text: huge vocab", text(`"vocab_size": 1000000000`), "text vocab_size", true},
		{"text: huge context", text(`"max_position_embeddings": 100000000`), "text max_position_embeddings", true},
		{"text: eps Inf in float32", text(`"layer_norm_eps": 1e39`), "text layer_norm_eps", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			var err error
			if tc.textParser {
				_, err = ParseTextConfig([]byte(tc.json))
			} else {
				_, err = ParseConfig([]byte(tc.json))
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want ErrConfig containing %q", err, tc.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refusing took %v", d)
			}
		})
	}
	// Controls: ViT-L/14, eps 1e-6 and 1e-12, and 1024 layers are accepted.
	for _, ok := range []string{
		vision(`"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14`),
		vision(`"layer_norm_eps": 1e-6`), vision(`"layer_norm_eps": 1e-12`), vision(`"num_hidden_layers": 1024`),
	} {
		if _, err := ParseConfig([]byte(ok)); err != nil {
			t.Errorf("ParseConfig(%s): %v", ok, err)
		}
	}
	if _, err := ParseTextConfig([]byte(text(`"layer_norm_eps": 1e-5, "num_hidden_layers": 12`))); err != nil {
		t.Errorf("ParseTextConfig(control): %v", err)
	}
}
