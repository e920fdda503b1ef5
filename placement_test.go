package safety

import (
	"path/filepath"
	"testing"
)

// TestPlacementExplicitAttention forces the SDPA probe to fail, as on a libtorch without a working
// scaled_dot_product_attention (before 2.0, or upstream gotch's wrapper on 2.1), and checks that Load
// and LoadTextEncoder both fall back to the explicit attention (the causal mask for the text tower)
// and still match the reference goldens: same embeddings and verdicts. (TestGoldenModels and
// TestTextEncoderGolden run the SDPA path where this libtorch has it.)
func TestPlacementExplicitAttention(t *testing.T) {
	saved := sdpaProbe
	sdpaProbe = func() bool { return false }
	t.Cleanup(func() { sdpaProbe = saved })

	for _, dir := range goldenModels(t) {
		t.Run("vision/"+filepath.Base(dir), func(t *testing.T) {
			c := mustLoad(t, dir, WithDevice(DeviceCPU))
			if c.Info().SDPA {
				t.Fatal("Info().SDPA is true with the probe failing")
			}
			compareWithReference(t, c, goldenRefs(t, dir), float32Tol)
		})
	}
	t.Run("text", func(t *testing.T) {
		e := mustLoadText(t, filepath.Join(textGoldenDir, "clip"), WithDevice(DeviceCPU))
		if e.Info().SDPA {
			t.Fatal("Info().SDPA is true with the probe failing")
		}
		embedErr, pooledErr := checkTextGolden(t, e, readTextGolden(t))
		t.Logf("explicit attention: max relative error: text_embeds %.2e, pooled %.2e", embedErr, pooledErr)
	})
}

// TestPlacementProbesBothTowers: with the probe working (this build's libtorch has a working SDPA),
// the checker and the text encoder decide alike: they report the same attention kernel and device.
func TestPlacementProbesBothTowers(t *testing.T) {
	c := mustLoad(t, testModelDir, WithDevice(DeviceCPU))
	e := mustLoadText(t, filepath.Join(textGoldenDir, "clip"), WithDevice(DeviceCPU))
	if c.Info().SDPA != e.Info().SDPA || c.Info().Device != e.Info().Device {
		t.Errorf("checker SDPA=%v on %s, text encoder SDPA=%v on %s: one placement should decide both",
			c.Info().SDPA, c.Info().Device, e.Info().SDPA, e.Info().Device)
	}
}
