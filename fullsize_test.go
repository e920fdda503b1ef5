package safety

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fullSizeDir holds a random-weight checkpoint with the real ViT-L/14 shapes and the reference's
// answers on two inputs, made by `make fullsize` (reference/fullsize.py; ~1.2 GB, git-ignored).
func fullSizeDir() string {
	if d := os.Getenv("SAFETY_FULLSIZE"); d != "" {
		return d
	}
	return filepath.Join("bench-cache", "fullsize")
}

func needFullSize(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("full-size model skipped under -short")
	}
	dir := fullSizeDir()
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		t.Skipf("no full-size checkpoint in %s (make fullsize)", dir)
	}
	return dir
}

func readF32(t testing.TB, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestFullSizeViTL14 checks the real architecture (24 layers, 1024 wide, 16 heads, patch 14)
// against the reference: image_embeds relative error ≤ 1e-4 in float32, same verdicts.
func TestFullSizeViTL14(t *testing.T) {
	dir := needFullSize(t)
	var exp struct {
		Results []expectedImage `json:"results"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, filepath.Join(dir, "model"), WithDevice(DeviceCPU))
	if v := c.Info().Vision; v.HiddenSize != 1024 || v.NumHiddenLayers != 24 || v.PatchSize != 14 {
		t.Fatalf("not the ViT-L/14 shapes: %+v", v)
	}
	pix := readF32(t, filepath.Join(dir, "inputs.f32"))
	res, err := c.CheckPixels(context.Background(), pix, len(exp.Results))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range exp.Results {
		r := res[i]
		if d := relErr(r.ImageEmbeds, e.ImageEmbeds); d > 1e-4 {
			t.Errorf("input %d: image_embeds relative error %.2e > 1e-4", i, d)
		} else {
			t.Logf("input %d: image_embeds relative error %.2e", i, d)
		}
		if r.NSFW != e.NSFW || !slices.Equal(r.BadConcepts, e.BadConcepts) || !slices.Equal(r.SpecialConcepts, e.SpecialCare) {
			t.Errorf("input %d: verdict nsfw=%v bad=%v special=%v, want %v %v %v", i, r.NSFW, r.BadConcepts,
				r.SpecialConcepts, e.NSFW, e.BadConcepts, e.SpecialCare)
		}
	}
}
