package safety

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The scoring rule against the reference's own numbers. The golden expected.json files hold, per
// model, the float32 cosines the reference computed for every image, the rounded scores and verdicts
// diffusers' forward made of them, and designed `cases` (testdata/golden/README.md) that sit on the
// rounding edge, on an exact rounding tie, or that hit only through the special-care adjustment.
// Feeding the reference's cosines to the library's scoring (Concepts.score) must give the reference's
// scores bit for bit: no tolerance, so that a wrong rounding or a wrong adjustment cannot hide in one.

// goldenCase is one entry of expected.json's "cases".
type goldenCase struct {
	Image      *string  `json:"image"`
	Kind       string   `json:"kind"` // "concept", "special" or "image"
	Concept    *int     `json:"concept"`
	Cos        float64  `json:"cos"`
	Threshold  float64  `json:"threshold"`
	Adjustment float64  `json:"adjustment"`
	Unrounded  float64  `json:"unrounded"`
	Score      *float64 `json:"score"`
	Hit        bool     `json:"hit"`
}

// goldenExtras is what a golden expected.json holds beyond expectedFile: the designed cases and the
// model's thresholds.
type goldenExtras struct {
	Cases map[string]goldenCase `json:"cases"`
	Model struct {
		ConceptThresholds []float64 `json:"concept_embeds_weights"`
		SpecialThresholds []float64 `json:"special_care_embeds_weights"`
	} `json:"model"`
}

// goldenCaseNames are the designed cases every golden model has (tensor_path_flagged only the
// tensor-path model).
var goldenCaseNames = []string{"special_care_hit", "special_care_only_through_earlier_special_adjustment",
	"special_rounds_to_zero_no_special_care", "flagged_only_through_special_care", "not_flagged_special_rounded_to_zero",
	"rounds_to_zero_not_flagged", "rounds_up_flagged", "clearly_flagged", "clearly_flagged_2", "rounds_half_to_even_tie",
	"clean_image"}

func readGoldenExtras(t *testing.T, modelDir string) goldenExtras {
	t.Helper()
	path := filepath.Join(modelDir, "expected.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g goldenExtras
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, name := range goldenCaseNames {
		if _, ok := g.Cases[name]; !ok {
			t.Fatalf("%s: no case %q", path, name)
		}
	}
	if len(g.Model.ConceptThresholds) == 0 || len(g.Model.SpecialThresholds) == 0 {
		t.Fatalf("%s: no thresholds", path)
	}
	return g
}

// e0 is the image embedding the scoring tests use: its cosine with a unitRow(c) is c.
func e0(p int) []float32 {
	e := make([]float32, p)
	e[0] = 1
	return e
}

// unitRow returns a concept row [c, s, 0, …] of width p whose float32 norm is exactly 1, so that
// cosineSimilarities gives c bit for bit for it and e0: the reference's cosine goes through the
// library's scoring unchanged.
func unitRow(t *testing.T, c float32, p int) []float32 {
	t.Helper()
	s := float32(math.Sqrt(max(0, 1-float64(c)*float64(c))))
	for range 64 {
		n := float32(math.Sqrt(float64(c)*float64(c) + float64(s)*float64(s)))
		if n == 1 {
			break
		}
		if n > 1 {
			s = math.Nextafter32(s, 0)
		} else {
			s = math.Nextafter32(s, 2)
		}
	}
	row := make([]float32, p)
	row[0], row[1] = c, s
	got, err := cosineSimilarities(e0(p), [][]float32{row})
	if err != nil {
		t.Fatalf("unitRow(%v): %v", c, err)
	}
	if got[0] != c {
		t.Fatalf("unitRow(%v): cosine %v", c, got[0])
	}
	return row
}

// scoreCosines runs the library's scoring rule (Concepts.score, no user adjustment) on the given
// cosines and thresholds.
func scoreCosines(t *testing.T, cos, scos, thresholds, specialThresholds []float32) Result {
	t.Helper()
	const p = 4
	k := Concepts{Thresholds: thresholds, SpecialThresholds: specialThresholds}
	for _, c := range cos {
		k.Embeds = append(k.Embeds, unitRow(t, c, p))
	}
	for _, c := range scos {
		k.SpecialEmbeds = append(k.SpecialEmbeds, unitRow(t, c, p))
	}
	var r Result
	if err := k.score(e0(p), 0, &r); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.CosDist, cos) || !slices.Equal(r.SpecialCosDist, scos) {
		t.Fatalf("cosines %v %v, want %v %v", r.CosDist, r.SpecialCosDist, cos, scos)
	}
	return r
}

func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// goldenScoredImages returns a golden model's images with the reference's cosines and scores: the
// golden images, and for the tensor-path model the tensor-path images too.
func goldenScoredImages(t *testing.T, modelDir string) []expectedImage {
	t.Helper()
	images := readExpected(t, filepath.Join(modelDir, "expected.json")).Images
	if g, _, _ := readTensorGolden(t); filepath.Join(goldenDir, g.Model) == modelDir {
		for _, im := range g.Images {
			images = append(images, im.expectedImage)
		}
	}
	return images
}

// TestScoringOnReferenceCosines applies the library's scoring rule to the reference's cosines of
// every image of every golden model (the tensor-path images included) with the model's thresholds:
// every rounded score, the special-care and concept verdicts equal diffusers' bit for bit.
func TestScoringOnReferenceCosines(t *testing.T) {
	for _, dir := range goldenModels(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			g := readGoldenExtras(t, dir)
			cw, sw := f32s(g.Model.ConceptThresholds), f32s(g.Model.SpecialThresholds)
			// The thresholds in expected.json are the checkpoint's.
			c := mustLoad(t, dir, WithDevice(DeviceCPU))
			if k := c.Concepts(); !slices.Equal(k.Thresholds, cw) || !slices.Equal(k.SpecialThresholds, sw) {
				t.Fatalf("checkpoint thresholds %v %v, expected.json %v %v", k.Thresholds, k.SpecialThresholds, cw, sw)
			}
			images := goldenScoredImages(t, dir)
			for _, e := range images {
				r := scoreCosines(t, f32s(e.CosDist), f32s(e.SpecialCosDist), cw, sw)
				if !slices.Equal(r.SpecialScores, f32s(e.SpecialScores)) || !slices.Equal(r.ConceptScores, f32s(e.ConceptScores)) {
					t.Errorf("%s: scores special %v concept %v, reference special %v concept %v", e.File,
						r.SpecialScores, r.ConceptScores, e.SpecialScores, e.ConceptScores)
				}
				if !slices.Equal(r.SpecialConcepts, e.SpecialCare) || !slices.Equal(r.BadConcepts, e.BadConcepts) || r.NSFW != e.NSFW {
					t.Errorf("%s: special care %v, bad %v, nsfw %v; reference %v, %v, %v", e.File,
						r.SpecialConcepts, r.BadConcepts, r.NSFW, e.SpecialCare, e.BadConcepts, e.NSFW)
				}
			}
			t.Logf("%d images scored bit for bit as the reference", len(images))
		})
	}
}

// TestGoldenCases scores each designed case of every golden model (expected.json "cases") with the
// library's rule, from the case's own cosine, threshold and adjustment: the rounded score equals
// the reference's bit for bit and the verdict matches. Among them: rounds_half_to_even_tie, whose
// unrounded float32 x has float32(x·1000) = 0.5 exactly (numpy rounds it to 0.000, not a hit;
// rounding half away from zero would make it 0.001, a hit), and the +0.0004 / +0.0007 edge cases.
func TestGoldenCases(t *testing.T) {
	for _, dir := range goldenModels(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			g := readGoldenExtras(t, dir)
			checked := 0
			for name, gc := range g.Cases {
				if gc.Kind == "image" {
					continue
				}
				if gc.Score == nil || (gc.Kind != "concept" && gc.Kind != "special") ||
					(gc.Adjustment != 0 && float32(gc.Adjustment) != specialCareAdjustment) {
					t.Fatalf("%s: malformed case %+v", name, gc)
				}
				cos, w, adj := float32(gc.Cos), float32(gc.Threshold), float32(gc.Adjustment)
				if x := cos - w + adj; x != float32(gc.Unrounded) {
					t.Errorf("%s: float32 cos − threshold + adjustment = %v, the reference's unrounded value %v", name, x, gc.Unrounded)
				}
				// The adjustment comes from an earlier special concept that hits.
				var scos, sw, ccos, cw []float32
				if adj != 0 {
					scos, sw = append(scos, 0.5), append(sw, 0)
				}
				if gc.Kind == "special" {
					scos, sw = append(scos, cos), append(sw, w)
				} else {
					ccos, cw = []float32{cos}, []float32{w}
				}
				r := scoreCosines(t, ccos, scos, cw, sw)
				score, hit := r.ConceptScores, r.BadConcepts
				if gc.Kind == "special" {
					score, hit = r.SpecialScores, r.SpecialConcepts
				}
				last := len(score) - 1
				if got := score[last]; got != float32(*gc.Score) || slices.Contains(hit, last) != gc.Hit {
					t.Errorf("%s: score %v hit %v, the reference's %v hit %v (cos %v − threshold %v + %v)", name, got,
						slices.Contains(hit, last), *gc.Score, gc.Hit, cos, w, adj)
				}
				checked++
			}
			if tie := g.Cases["rounds_half_to_even_tie"]; float32(float32(tie.Unrounded)*1000) != 0.5 {
				t.Errorf("rounds_half_to_even_tie: float32(x·1000) = %v, not the tie 0.5", float32(float32(tie.Unrounded)*1000))
			}
			t.Logf("%d designed cases scored as the reference", checked)
		})
	}
}

// TestSpecialCareCarry checks the special-care adjustment carrying into the later special concepts
// (diffusers sets it inside the special loop): on each golden model's special-care image, the case
// special_care_only_through_earlier_special_adjustment (cos − w = −0.005) is a special-care hit only
// because the earlier special concept hit. With the reference's cosines through the library's rule:
// both specials hit; with the earlier one's threshold raised out of reach, the later one is a miss
// scoring −0.005 and the concept flagged only through special care is no longer flagged. And the
// whole checker gives that image the same special care as the reference.
func TestSpecialCareCarry(t *testing.T) {
	for _, dir := range goldenModels(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			g := readGoldenExtras(t, dir)
			first, later := g.Cases["special_care_hit"], g.Cases["special_care_only_through_earlier_special_adjustment"]
			viaCare := g.Cases["flagged_only_through_special_care"]
			if first.Image == nil || later.Image == nil || viaCare.Image == nil || *first.Image != *later.Image ||
				*viaCare.Image != *first.Image || *first.Concept >= *later.Concept {
				t.Fatalf("cases do not describe one image with an earlier and a later special: %+v %+v %+v", first, later, viaCare)
			}
			var img expectedImage
			for _, e := range readExpected(t, filepath.Join(dir, "expected.json")).Images {
				if e.File == *first.Image {
					img = e
				}
			}
			if img.File == "" {
				t.Fatalf("no image %s in expected.json", *first.Image)
			}
			cw, sw := f32s(g.Model.ConceptThresholds), f32s(g.Model.SpecialThresholds)
			cos, scos := f32s(img.CosDist), f32s(img.SpecialCosDist)
			s1, s2, k := *first.Concept, *later.Concept, *viaCare.Concept

			r := scoreCosines(t, cos, scos, cw, sw)
			if !slices.Contains(r.SpecialConcepts, s1) || !slices.Contains(r.SpecialConcepts, s2) || !slices.Contains(r.BadConcepts, k) {
				t.Errorf("%s: special care %v, bad %v; want specials %d and %d (the later one through the carried "+
					"adjustment) and concept %d", img.File, r.SpecialConcepts, r.BadConcepts, s1, s2, k)
			}
			if r.SpecialScores[s2] != float32(*later.Score) || *later.Score <= 0 {
				t.Errorf("%s: later special score %v, the reference's %v", img.File, r.SpecialScores[s2], *later.Score)
			}

			noFirst := slices.Clone(sw)
			noFirst[s1] = 2 // beyond any cosine: the earlier special cannot hit
			r = scoreCosines(t, cos, scos, cw, noFirst)
			if slices.Contains(r.SpecialConcepts, s2) || r.SpecialScores[s2] >= 0 {
				t.Errorf("%s: without the earlier special hit, the later special scores %v (hit %v), want a miss",
					img.File, r.SpecialScores[s2], slices.Contains(r.SpecialConcepts, s2))
			}
			if slices.Contains(r.BadConcepts, k) {
				t.Errorf("%s: concept %d still flagged without special care", img.File, k)
			}

			c := mustLoad(t, dir, WithDevice(DeviceCPU))
			res, err := c.CheckPixels(context.Background(), readPixelDump(t, img.File), 1)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res[0].SpecialConcepts, img.SpecialCare) || !slices.Contains(res[0].SpecialConcepts, s2) {
				t.Errorf("%s through the checker: special care %v, the reference's %v", img.File, res[0].SpecialConcepts, img.SpecialCare)
			}
		})
	}
}
