package clip

import "testing"

func FuzzConfig(f *testing.F) {
	f.Add([]byte(`{"model_type":"clip","vision_config":{"hidden_size":32,"num_attention_heads":4}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseConfig returned an invalid config: %v", err)
		}
		_ = cfg.Vision.NumPatches() + cfg.Vision.HeadDim()
	})
}
