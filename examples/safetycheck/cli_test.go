package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tracked golden files (testdata/golden, made by reference/make_golden.py), relative to this
// directory: the tiny_quickgelu model (the parity fixture's architecture and key layout), its images
// and the reference's pixel values. With that model, gray16_180x120.png is clearly flagged and
// rgb_300x200.png is the designed clean image.
// (goldenModel is in concepts_test.go.)
var (
	goldenDir    = filepath.Join("..", "..", "testdata", "golden")
	goldenImages = filepath.Join(goldenDir, "images")
	flaggedImage = filepath.Join(goldenImages, "gray16_180x120.png")
	safeImage    = filepath.Join(goldenImages, "rgb_300x200.png")
)

// record is the -json contract that other tools script against.
type record struct {
	File            string    `json:"file"`
	Error           string    `json:"error"`
	NSFW            *bool     `json:"nsfw"`
	SpecialCare     *bool     `json:"special_care"`
	BadConcepts     []int     `json:"bad_concepts"`
	SpecialConcepts []int     `json:"special_concepts"`
	ConceptScores   []float64 `json:"concept_scores"`
	SpecialScores   []float64 `json:"special_scores"`
	CosDist         []float64 `json:"cos_dist"`
	SpecialCosDist  []float64 `json:"special_cos_dist"`
	ImageEmbeds     []float64 `json:"image_embeds"`
}

func runCLI(t *testing.T, args ...string) (int, []record, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	var recs []record
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "{") {
			var r record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
			}
			recs = append(recs, r)
		}
	}
	return code, recs, errb.String()
}

func TestJSONContract(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.png")
	code, recs, stderr := runCLI(t, "-model", goldenModel, "-json", "-device", "cpu", flaggedImage, missing, safeImage)
	if code != exitFailed {
		t.Fatalf("exit %d with an unreadable input, want %d; stderr: %s", code, exitFailed, stderr)
	}
	if len(recs) != 3 {
		t.Fatalf("%d JSON lines, want 3 (one per input, in order)", len(recs))
	}
	if recs[0].File != flaggedImage || recs[1].File != missing {
		t.Errorf("files %q, %q: not the paths as given, in input order", recs[0].File, recs[1].File)
	}
	if recs[1].Error == "" || recs[1].NSFW != nil || recs[1].ConceptScores != nil {
		t.Errorf("failed input: %+v, want only file and error", recs[1])
	}
	for _, i := range []int{0, 2} {
		r := recs[i]
		if r.Error != "" || r.NSFW == nil || r.SpecialCare == nil || r.BadConcepts == nil || r.SpecialConcepts == nil {
			t.Errorf("%s: missing fields: %+v", r.File, r)
		}
		if len(r.ConceptScores) != 17 || len(r.SpecialScores) != 3 || len(r.CosDist) != 17 || len(r.SpecialCosDist) != 3 || len(r.ImageEmbeds) != 24 {
			t.Errorf("%s: array lengths %d %d %d %d %d", r.File, len(r.ConceptScores), len(r.SpecialScores),
				len(r.CosDist), len(r.SpecialCosDist), len(r.ImageEmbeds))
		}
	}
	if !*recs[0].NSFW || *recs[2].NSFW {
		t.Errorf("verdicts %v, %v; want the golden model's clearly flagged gray16 image and its clean rgb_300x200", *recs[0].NSFW, *recs[2].NSFW)
	}
}

func TestExitCodes(t *testing.T) {
	model, flagged, safe := goldenModel, flaggedImage, safeImage
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"all checked", []string{"-model", model, safe, flagged}, exitOK},
		{"fail on nsfw", []string{"-model", model, "-fail-on-nsfw", safe, flagged}, exitFlagged},
		{"fail on nsfw, safe only", []string{"-model", model, "-fail-on-nsfw", safe}, exitOK},
		{"no inputs", []string{"-model", model}, exitUsage},
		{"unknown flag", []string{"-nope", safe}, exitUsage},
		{"bad dtype", []string{"-model", model, "-dtype", "int8", safe}, exitUsage},
		{"bad batch", []string{"-model", model, "-batch", "0", safe}, exitUsage},
		{"missing model dir", []string{"-model", "/nonexistent/dir", safe}, exitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, stderr := runCLI(t, tc.args...); code != tc.want {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.want, stderr)
			}
		})
	}
}

func TestPixelsDump(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(goldenImages, "palette_224x224.png")
	code, _, stderr := runCLI(t, "-model", goldenModel, "-json", "-pixels", dir, img)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got, err := os.ReadFile(filepath.Join(dir, "palette_224x224.png.pixel_values.f32"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(goldenDir, "pixels", "palette_224x224.png.pixel_values.f32"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("pixel dump differs from the reference's (%d vs %d bytes)", len(got), len(want))
	}
}

// TestOfflineCache lays the golden model out in a Hugging Face cache exactly as huggingface_hub does
// and checks that the default model name resolves from it with HF_HUB_OFFLINE=1.
func TestOfflineCache(t *testing.T) {
	cache := t.TempDir()
	repo := filepath.Join(cache, "models--CompVis--stable-diffusion-safety-checker")
	commit := strings.Repeat("ab", 20)
	snap := filepath.Join(repo, "snapshots", commit)
	for _, d := range []string{filepath.Join(repo, "blobs"), filepath.Join(repo, "refs"), snap} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repo, "refs", "main"), []byte(commit), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "preprocessor_config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(goldenModel, f))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		etag := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(repo, "blobs", etag), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "blobs", etag), filepath.Join(snap, f)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("HF_ENDPOINT", "http://127.0.0.1:1") // nothing listens: any request would fail
	code, recs, stderr := runCLI(t, "-json", flaggedImage)
	if code != exitOK || len(recs) != 1 || recs[0].NSFW == nil || !*recs[0].NSFW {
		t.Fatalf("exit %d, %+v; stderr: %s", code, recs, stderr)
	}

	// An empty cache offline is a clear error, not a hang or a download.
	t.Setenv("HF_HUB_CACHE", t.TempDir())
	code, _, stderr = runCLI(t, "-json", flaggedImage)
	if code != exitFailed || !strings.Contains(stderr, "offline") {
		t.Errorf("empty offline cache: exit %d, stderr %q", code, stderr)
	}
}
