package imageproc

import (
	"strings"
	"testing"
)

// TestConfigThatErasesTheInputRefused covers issue 13 item 5 (preprocessing side): a
// preprocessor_config.json that makes every image the same model input is refused when parsed.
func TestConfigThatErasesTheInputRefused(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"rescale_factor 0", `{"rescale_factor": 0}`, "erased"},
		{"rescale_factor below float32", `{"rescale_factor": 1e-60}`, "erased"},
		{"rescale_factor Inf in float32", `{"rescale_factor": 1e300}`, "becomes"},
		{"std so large every level rounds to zero", `{"image_std": 1e38, "image_mean": 0, "rescale_factor": 1e-10}`, "erased"},
		{"size 1", `{"size": 1}`, "quarter"},
		{"size {shortest_edge: 1}", `{"size": {"shortest_edge": 1}}`, "quarter"},
		{"size [1, 1]", `{"size": [1, 1]}`, "quarter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseConfig(%s) = %v, want an error containing %q", tc.json, err, tc.want)
			}
		})
	}
	// Controls: the SD v1 feature extractor, no rescale, a negative factor and a padding crop.
	for _, ok := range []string{`{}`, `{"do_rescale": false}`, `{"rescale_factor": -0.00392156862745098}`,
		`{"size": {"height": 100, "width": 150}}`, `{"size": 56}`, `{"do_center_crop": false, "size": 1}`} {
		if _, err := ParseConfig([]byte(ok)); err != nil {
			t.Errorf("ParseConfig(%s): %v", ok, err)
		}
	}
}
