package imageproc

import "testing"

// FuzzProcessorConfig feeds arbitrary bytes to ParseConfig, the parser of a model directory's
// preprocessor_config.json: it must return an error or a configuration that validates and can
// preprocess an image, never panic.
//
//	go test ./internal/imageproc/ -run '^$' -fuzz '^FuzzProcessorConfig$' -fuzztime 60s
func FuzzProcessorConfig(f *testing.F) {
	for _, seed := range []string{
		`{"crop_size": 224, "do_center_crop": true, "do_convert_rgb": true, "do_normalize": true, "do_resize": true,
		  "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
		  "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}`,
		`{"size": {"shortest_edge": 10, "longest_edge": 20}, "crop_size": [8, 6], "resample": "lanczos"}`,
		`{"size": {"height": 3, "width": 9}, "do_center_crop": false, "image_mean": 0.5, "image_std": 2}`,
		`{"size": [4, 5], "crop_size": {"height": 7, "width": 2}, "do_rescale": false, "rescale_factor": 1e308}`,
		`{"resample": null, "size": null}`,
	} {
		f.Add([]byte(seed))
	}
	src, err := FromImage(pattern(7, 5, 1))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig returned a configuration that does not validate: %v", err)
		}
		w, h, err := c.OutputSize(src.Width, src.Height)
		if err != nil {
			return
		}
		if w <= 0 || h <= 0 {
			t.Fatalf("output size %dx%d", w, h)
		}
		if w*h > 1<<20 {
			return // valid, but too slow to preprocess in a fuzz loop
		}
		dst := make([]float32, 3*w*h)
		if err := c.Preprocess(src, dst); err != nil {
			t.Fatalf("Preprocess with a valid configuration: %v", err)
		}
	})
}
