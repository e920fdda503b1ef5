package safety

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// readPixelDump reads a golden pixel dump (float32 LE [3,224,224]).
func readPixelDump(t testing.TB, image string) []float32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir, "pixels", image+".pixel_values.f32"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// TestAddConcept adds the golden concept texts to the tiny checker whose vision tower the tiny CLIP
// shares, and compares each image's custom cosine with the one the reference computed from
// CLIPModel's text and image features.
func TestAddConcept(t *testing.T) {
	g := readTextGolden(t)
	exp := readExpected(t, filepath.Join(goldenDir, g.Concepts.Checker, "expected.json"))
	enc := mustLoadText(t, filepath.Join(textGoldenDir, "clip"))
	for _, count := range []bool{false, true} {
		c := mustLoad(t, filepath.Join(goldenDir, g.Concepts.Checker), WithDevice(DeviceCPU), WithCustomConceptsCount(count))
		if err := c.AddConcept("weapon", "a photo of a weapon", 0); !errors.Is(err, ErrNoTextEncoder) {
			t.Errorf("AddConcept without an encoder: %v", err)
		}
		if err := c.SetTextEncoder(enc); err != nil {
			t.Fatal(err)
		}
		// Thresholds: the median cosine of each text over the images, so that some images hit.
		thresholds := make([]float32, len(g.Concepts.Texts))
		for k, text := range g.Concepts.Texts {
			col := make([]float64, len(g.Concepts.Images))
			for i := range col {
				col[i] = g.Concepts.Cos[i][k]
			}
			slices.Sort(col)
			thresholds[k] = float32(col[len(col)/2]) - 0.0123
			if err := c.AddConcept(text, text, thresholds[k]); err != nil {
				t.Fatal(err)
			}
		}
		worst := 0.0
		for i, name := range g.Concepts.Images {
			res, err := c.CheckPixels(context.Background(), readPixelDump(t, name), 1)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			want := exp.Images[i]
			if want.File != name {
				t.Fatalf("image order: %s, want %s", want.File, name)
			}
			if len(r.CustomScores) != len(g.Concepts.Texts) {
				t.Fatalf("%s: %d custom scores", name, len(r.CustomScores))
			}
			anyHit := false
			for k, s := range r.CustomScores {
				d := math.Abs(float64(s.Cos) - g.Concepts.Cos[i][k])
				worst = max(worst, d)
				if d > 1e-5 {
					t.Errorf("%s / %q: cos %v, reference %v", name, s.Name, s.Cos, g.Concepts.Cos[i][k])
				}
				// The score is the reference's cos − threshold rounded to three decimals: a multiple
				// of 0.001 within half a step (plus the cosine tolerance) of it; a hit iff > 0.
				raw := g.Concepts.Cos[i][k] - float64(thresholds[k])
				steps := float64(s.Score) * 1000
				if s.Name != g.Concepts.Texts[k] || math.Abs(float64(s.Score)-raw) > 0.0005+1e-5 ||
					math.Abs(steps-math.Round(steps)) > 1e-3 || s.Hit != (s.Score > 0) {
					t.Errorf("%s: custom score %+v (threshold %v, reference cos − threshold %.6f)", name, s, thresholds[k], raw)
				}
				anyHit = anyHit || s.Hit
			}
			// built-in verdict untouched; custom hits count only when asked
			if wantNSFW := want.NSFW || (count && anyHit); r.NSFW != wantNSFW {
				t.Errorf("%s (count=%v): NSFW %v, want %v (built-in %v, custom hit %v)", name, count, r.NSFW, wantNSFW,
					want.NSFW, anyHit)
			}
			if !slices.Equal(r.BadConcepts, want.BadConcepts) {
				t.Errorf("%s: bad concepts %v, want %v", name, r.BadConcepts, want.BadConcepts)
			}
		}
		t.Logf("count=%v: custom cosine max abs error vs the reference %.2e", count, worst)
	}
}

func TestCustomConceptValidation(t *testing.T) {
	c := mustLoad(t, filepath.Join(goldenDir, "models", "tiny_quickgelu"), WithDevice(DeviceCPU))
	p := c.Info().ProjectionDim
	good := make([]float32, p)
	good[0] = 1
	nan := slices.Clone(good)
	nan[1] = float32(math.NaN())
	for _, tc := range []struct {
		name      string
		emb       []float32
		threshold float32
	}{
		{"", good, 0.1},
		{"short", good[:p-1], 0.1},
		{"nan", nan, 0.1},
		{"zero", make([]float32, p), 0.1},
		{"threshold", good, 1.5},
		{"threshold-nan", good, float32(math.NaN())},
	} {
		if err := c.AddConceptEmbedding(tc.name, tc.emb, tc.threshold); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%q: %v, want ErrInvalidInput", tc.name, err)
		}
	}
	if err := c.AddConceptEmbedding("a", good, 0.2); err != nil {
		t.Fatal(err)
	}
	good[0] = 7 // the checker keeps its own copy
	if err := c.AddConceptEmbedding("a", good, 0.2); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("duplicate name: %v", err)
	}
	if err := c.AddConceptEmbedding("b", good, -0.5); err != nil {
		t.Fatal(err)
	}
	cs := c.CustomConcepts()
	if len(cs) != 2 || cs[0].Name != "a" || cs[0].Embedding[0] != 1 || cs[1].Name != "b" || cs[1].Threshold != -0.5 {
		t.Errorf("CustomConcepts = %+v", cs)
	}
	cs[0].Embedding[0] = 99
	if c.CustomConcepts()[0].Embedding[0] != 1 {
		t.Error("CustomConcepts returned the checker's own slice")
	}
	if !c.RemoveConcept("a") || c.RemoveConcept("a") {
		t.Error("RemoveConcept")
	}
	if cs := c.CustomConcepts(); len(cs) != 1 || cs[0].Name != "b" {
		t.Errorf("after RemoveConcept: %+v", cs)
	}
	// A text encoder of another width is refused.
	enc := mustLoadText(t, filepath.Join(textGoldenDir, "clip"))
	other := mustLoad(t, filepath.Join(goldenDir, "models", "tiny_gelu_eps"), WithDevice(DeviceCPU))
	if err := other.SetTextEncoder(enc); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("SetTextEncoder of another width: %v", err)
	}
	if err := c.SetTextEncoder(enc); err != nil {
		t.Fatal(err)
	}
	err := c.AddConcept("long", "a photo of "+strings.Repeat("very ", 80)+"big cat", 0.1)
	if !errors.Is(err, ErrTextTooLong) {
		t.Errorf("long text: %v", err)
	}
	t.Log(err)
	if err := c.SetTextEncoder(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.AddConcept("x", "x", 0.1); !errors.Is(err, ErrNoTextEncoder) {
		t.Errorf("after SetTextEncoder(nil): %v", err)
	}
	c.Close()
	if err := c.AddConceptEmbedding("c", good, 0.1); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// TestCustomConceptsConcurrent adds and removes concepts while checks run: every result scores a
// consistent set (the concepts present at some moment), and nothing races (go test -race).
func TestCustomConceptsConcurrent(t *testing.T) {
	c := mustLoad(t, filepath.Join(goldenDir, "models", "tiny_quickgelu"), WithDevice(DeviceCPU), WithBatchSize(1))
	p := c.Info().ProjectionDim
	pix := readPixelDump(t, "rgb_300x200.png")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			e := make([]float32, p)
			e[i%p] = 1
			name := "c" + string(rune('a'+i%20))
			if c.AddConceptEmbedding(name, e, 0.5) != nil {
				c.RemoveConcept(name)
			}
		}
	}()
	four := slices.Concat(pix, pix, pix, pix)
	for range 5 {
		res, err := c.CheckPixels(context.Background(), four, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			seen := map[string]bool{}
			for _, s := range r.CustomScores {
				if seen[s.Name] {
					t.Errorf("concept %s scored twice", s.Name)
				}
				seen[s.Name] = true
			}
		}
	}
	cancel()
	wg.Wait()
}
