package safety

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/sdsafety/safety/internal/gotchutil"
)

// The reference's answers: ../shared/parity (independent fixture) and testdata/golden (made by
// reference/make_golden.py with diffusers + transformers; see testdata/golden/README.md).
const (
	parityDir = "../shared/parity"
	goldenDir = "testdata/golden"
)

type expectedFile struct {
	Images []expectedImage `json:"images"`
}

type expectedImage struct {
	File           string    `json:"file"`
	PixelSHA256    string    `json:"pixel_values_sha256"`
	PooledOutput   []float64 `json:"pooled_output"`
	ImageEmbeds    []float64 `json:"image_embeds"`
	CosDist        []float64 `json:"cos_dist"`
	SpecialCosDist []float64 `json:"special_cos_dist"`
	ConceptScores  []float64 `json:"concept_scores"`
	SpecialScores  []float64 `json:"special_scores"`
	BadConcepts    []int     `json:"bad_concepts"`
	SpecialCare    []int     `json:"special_care"`
	NSFW           bool      `json:"nsfw"`
}

func readExpected(t *testing.T, path string) expectedFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e expectedFile
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(e.Images) == 0 {
		t.Fatalf("%s: no images", path)
	}
	return e
}

func needDir(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("%s not present: %v", dir, err)
	}
}

func pixelSHA(p []float32) string {
	b := make([]byte, 4*len(p))
	for i, v := range p {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func relErr(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range want {
		d := float64(got[i]) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	return math.Sqrt(num / den)
}

func maxAbs(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range want {
		m = math.Max(m, math.Abs(float64(got[i])-want[i]))
	}
	return m
}

// tolerances for comparing with the reference.
type tolerance struct {
	embeds float64 // relative error of image_embeds
	cos    float64 // absolute error of cosine similarities
	score  float64 // absolute error of rounded scores (0.0011 = at most one rounding step)
	exact  bool    // verdicts must match exactly
}

var float32Tol = tolerance{embeds: 1e-4, cos: 1e-4, score: 0.0011, exact: true}

// compareWithReference checks every image of an expected.json through the public API.
func compareWithReference(t *testing.T, c *Checker, imagesDir string, exp expectedFile, tol tolerance) {
	t.Helper()
	ctx := context.Background()
	for _, e := range exp.Images {
		pix, err := c.PreprocessFile(filepath.Join(imagesDir, e.File))
		if err != nil {
			t.Errorf("%s: %v", e.File, err)
			continue
		}
		isJPEG := strings.HasSuffix(e.File, ".jpg") || strings.HasSuffix(e.File, ".jpeg")
		if got := pixelSHA(pix); e.PixelSHA256 != "" && got != e.PixelSHA256 && !isJPEG {
			t.Errorf("%s: pixel values differ from the reference's (sha256 %s, want %s)", e.File, got, e.PixelSHA256)
		}
		res, err := c.CheckPixels(ctx, pix, 1)
		if err != nil {
			t.Errorf("%s: %v", e.File, err)
			continue
		}
		r := res[0]
		if tol.exact {
			if r.NSFW != e.NSFW || !slices.Equal(r.BadConcepts, e.BadConcepts) || !slices.Equal(r.SpecialConcepts, e.SpecialCare) {
				t.Errorf("%s: verdict nsfw=%v bad=%v special=%v, want nsfw=%v bad=%v special=%v",
					e.File, r.NSFW, r.BadConcepts, r.SpecialConcepts, e.NSFW, e.BadConcepts, e.SpecialCare)
			}
		}
		if d := relErr(r.ImageEmbeds, e.ImageEmbeds); d > tol.embeds {
			t.Errorf("%s: image_embeds relative error %.2e > %.0e", e.File, d, tol.embeds)
		}
		if e.PooledOutput != nil {
			if d := relErr(r.PooledOutput, e.PooledOutput); d > tol.embeds {
				t.Errorf("%s: pooled_output relative error %.2e > %.0e", e.File, d, tol.embeds)
			}
		}
		if d := max(maxAbs(r.CosDist, e.CosDist), maxAbs(r.SpecialCosDist, e.SpecialCosDist)); d > tol.cos {
			t.Errorf("%s: cosine similarity error %.2e > %.0e", e.File, d, tol.cos)
		}
		if d := max(maxAbs(r.ConceptScores, e.ConceptScores), maxAbs(r.SpecialScores, e.SpecialScores)); d > tol.score {
			t.Errorf("%s: rounded scores differ by %.4f", e.File, d)
		}
	}
}

func mustLoad(t testing.TB, dir string, opts ...Option) *Checker {
	t.Helper()
	c, err := Load(dir, opts...)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestParityFixture runs the independent reference fixture through the library, for each weights
// format it ships.
func TestParityFixture(t *testing.T) {
	needDir(t, parityDir)
	exp := readExpected(t, filepath.Join(parityDir, "expected", "expected.json"))
	for _, tc := range []struct {
		name    string
		weights string
		opts    []Option
		tol     tolerance
	}{
		{"safetensors", "model.safetensors", nil, float32Tol},
		{"torch_zip", "pytorch_model.bin", nil, float32Tol},
		// fp16-rounded weights computed in float32: close to, not equal to, the reference.
		{"fp16_weights", "model.fp16.safetensors", nil, tolerance{embeds: 5e-3, cos: 5e-3, score: 0.006}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := modelWith(t, filepath.Join(parityDir, "model"), tc.weights)
			c := mustLoad(t, dir, append(tc.opts, WithDevice(DeviceCPU))...)
			if got := filepath.Base(c.Info().WeightsFile); got != tc.weights {
				t.Fatalf("loaded %s, want %s", got, tc.weights)
			}
			compareWithReference(t, c, filepath.Join(parityDir, "images"), exp, tc.tol)
		})
	}
}

// modelWith makes a model directory holding src's config files and only the named weights file
// (symlinked), so that Load has to read that format.
func modelWith(t *testing.T, src, weights string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config.json", "preprocessor_config.json", weights} {
		abs, err := filepath.Abs(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			continue
		}
		if err := os.Symlink(abs, filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestGoldenModels compares every golden model (several configs: activations, eps, odd sizes,
// config defaults) with the reference's answers.
func TestGoldenModels(t *testing.T) {
	models, _ := filepath.Glob(filepath.Join(goldenDir, "models", "*", "expected.json"))
	if len(models) == 0 {
		t.Skip("no golden models; run make golden")
	}
	for _, path := range models {
		dir := filepath.Dir(path)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := mustLoad(t, dir, WithDevice(DeviceCPU))
			compareWithReference(t, c, filepath.Join(goldenDir, "images"), readExpected(t, path), float32Tol)
		})
	}
}

// TestBatchEqualsSingle checks that batching does not change results.
func TestBatchEqualsSingle(t *testing.T) {
	needDir(t, parityDir)
	c := mustLoad(t, filepath.Join(parityDir, "model"), WithDevice(DeviceCPU), WithBatchSize(3))
	files, _ := filepath.Glob(filepath.Join(parityDir, "images", "*"))
	var all []float32
	for _, f := range files {
		p, err := c.PreprocessFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p...)
	}
	ctx := context.Background()
	batch, err := c.CheckPixels(ctx, all, len(files))
	if err != nil {
		t.Fatal(err)
	}
	per := len(all) / len(files)
	for i := range files {
		one, err := c.CheckPixels(ctx, all[i*per:(i+1)*per], 1)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbs(batch[i].ImageEmbeds, f64(one[0].ImageEmbeds)); d > 1e-5 {
			t.Errorf("%s: batched embeds differ by %.2e", files[i], d)
		}
		if batch[i].NSFW != one[0].NSFW {
			t.Errorf("%s: batched verdict differs", files[i])
		}
	}
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// TestNoTensorLeak checks that a Check drops every intermediate tensor, and Close every weight.
func TestNoTensorLeak(t *testing.T) {
	needDir(t, parityDir)
	before := gotchutil.LiveTensors()
	c, err := Load(filepath.Join(parityDir, "model"), WithDevice(DeviceCPU))
	if err != nil {
		t.Fatal(err)
	}
	pix, err := c.PreprocessFile(filepath.Join(parityDir, "images", "astronaut_512.png"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckPixels(context.Background(), pix, 1); err != nil { // warm-up
		t.Fatal(err)
	}
	loaded := gotchutil.LiveTensors()
	for range 5 {
		if _, err := c.CheckPixels(context.Background(), append(append([]float32{}, pix...), pix...), 2); err != nil {
			t.Fatal(err)
		}
	}
	if got := gotchutil.LiveTensors(); got != loaded {
		t.Errorf("live tensors after 5 checks: %d, want %d", got, loaded)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := gotchutil.LiveTensors(); got != before {
		t.Errorf("live tensors after Close: %d, want %d", got, before)
	}
}

func TestClosed(t *testing.T) {
	needDir(t, parityDir)
	c, err := Load(filepath.Join(parityDir, "model"), WithDevice(DeviceCPU))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	pix := make([]float32, 3*224*224)
	if _, err := c.CheckPixels(context.Background(), pix, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("CheckPixels after Close: %v, want ErrClosed", err)
	}
}

func TestCancelled(t *testing.T) {
	needDir(t, parityDir)
	c := mustLoad(t, filepath.Join(parityDir, "model"), WithDevice(DeviceCPU))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pix := make([]float32, 3*224*224)
	if _, err := c.CheckPixels(ctx, pix, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("CheckPixels with a cancelled context: %v", err)
	}
	if _, err := c.CheckPixels(context.Background(), pix, 1); err != nil {
		t.Fatalf("checker unusable after a cancelled call: %v", err)
	}
}

func TestCheckPixelsBadShape(t *testing.T) {
	needDir(t, parityDir)
	c := mustLoad(t, filepath.Join(parityDir, "model"), WithDevice(DeviceCPU))
	for _, n := range []int{-1, 0, 2} {
		if _, err := c.CheckPixels(context.Background(), make([]float32, 3*224*224), n); n != 0 && !errors.Is(err, ErrInvalidInput) {
			t.Errorf("n=%d: %v, want ErrInvalidInput", n, err)
		}
	}
}

func TestInvalidOptions(t *testing.T) {
	for name, opt := range map[string]Option{
		"device":     WithDevice("tpu"),
		"dtype":      WithDType("int8"),
		"batch":      WithBatchSize(0),
		"threads":    WithThreads(-1),
		"adjustment": WithAdjustment(float32(math.NaN())),
		"maxpixels":  WithMaxPixels(0),
	} {
		if _, err := Load(filepath.Join(parityDir, "model"), opt); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%s: %v, want ErrInvalidOption", name, err)
		}
	}
}

// TestAdjustment checks the sensitivity knob: +x adds x to every concept score.
func TestAdjustment(t *testing.T) {
	needDir(t, parityDir)
	pixFile := filepath.Join(parityDir, "images", "astronaut_512.png")
	base := mustLoad(t, filepath.Join(parityDir, "model"), WithDevice(DeviceCPU))
	strict := mustLoad(t, filepath.Join(parityDir, "model"), WithDevice(DeviceCPU), WithAdjustment(0.5))
	pix, err := base.PreprocessFile(pixFile)
	if err != nil {
		t.Fatal(err)
	}
	a, err := base.CheckPixels(context.Background(), pix, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := strict.CheckPixels(context.Background(), pix, 1)
	if err != nil {
		t.Fatal(err)
	}
	for k := range a[0].ConceptScores {
		if d := b[0].ConceptScores[k] - a[0].ConceptScores[k]; math.Abs(float64(d)-0.5) > 0.0015 {
			t.Errorf("concept %d: score moved by %v, want 0.5", k, d)
		}
	}
	if !b[0].NSFW {
		t.Error("adjustment +0.5 did not flag the image")
	}
	if !slices.Equal(a[0].SpecialScores, b[0].SpecialScores) {
		t.Error("adjustment changed the special-care scores")
	}
}

func TestMain(m *testing.M) {
	runtime.GOMAXPROCS(runtime.NumCPU())
	os.Exit(m.Run())
}

// TestExplicitAttentionMatchesSDPA checks the fallback used where scaled_dot_product_attention is
// missing (libtorch < 2.0) or broken: same embeddings and verdicts as the reference.
func TestExplicitAttentionMatchesSDPA(t *testing.T) {
	needDir(t, parityDir)
	c := mustLoad(t, filepath.Join(parityDir, "model"), WithDevice(DeviceCPU))
	setSDPA := func(on bool) {
		_ = c.rt.Run(func() error {
			c.tower.useSDPA = on
			return nil
		})
	}
	setSDPA(false)
	defer setSDPA(c.info.SDPA)
	compareWithReference(t, c, filepath.Join(parityDir, "images"),
		readExpected(t, filepath.Join(parityDir, "expected", "expected.json")), float32Tol)
}

// TestDTypeOnCPU checks that a precision the CPU build cannot run is refused at Load with a clear
// error (libtorch 2.1 has no float16 conv2d on the CPU), and that bfloat16 gives float32's verdicts.
func TestDTypeOnCPU(t *testing.T) {
	needDir(t, parityDir)
	model := filepath.Join(parityDir, "model")
	c, err := Load(model, WithDevice(DeviceCPU), WithDType(Float16))
	if err == nil {
		c.Close()
		t.Log("this libtorch runs float16 on the CPU")
	} else if !errors.Is(err, ErrUnsupported) {
		t.Errorf("float16 on CPU: %v, want nil or ErrUnsupported", err)
	}
	bf := mustLoad(t, model, WithDevice(DeviceCPU), WithDType(BFloat16))
	exp := readExpected(t, filepath.Join(parityDir, "expected", "expected.json"))
	compareWithReference(t, bf, filepath.Join(parityDir, "images"), exp, tolerance{embeds: 2e-2, cos: 5e-3, score: 0.006})
	// Verdicts: bfloat16 keeps about 3 significant digits, so a concept whose reference score lies
	// within 5e-3 of the rounding edge may flip (the fixture puts two there on purpose: +0.0004 and
	// +0.0007); every other concept must keep its verdict.
	for _, e := range exp.Images {
		pix, err := bf.PreprocessFile(filepath.Join(parityDir, "images", e.File))
		if err != nil {
			t.Fatal(err)
		}
		res, err := bf.CheckPixels(context.Background(), pix, 1)
		if err != nil {
			t.Fatal(err)
		}
		adj := 0.0
		if len(e.SpecialCare) > 0 {
			adj = 0.01
		}
		for k := range e.CosDist {
			want, got := slices.Contains(e.BadConcepts, k), slices.Contains(res[0].BadConcepts, k)
			margin := math.Abs(e.CosDist[k] - float64(bf.concepts.Thresholds[k]) + adj)
			if want != got && margin > 5e-3 {
				t.Errorf("%s concept %d: bfloat16 hit=%v, float32 reference hit=%v, %.4f from the edge", e.File, k, got, want, margin)
			} else if want != got {
				t.Logf("%s concept %d: flips in bfloat16 (%.4f from the rounding edge)", e.File, k, margin)
			}
		}
	}
}

func TestConceptsAccessor(t *testing.T) {
	needDir(t, parityDir)
	c := mustLoad(t, filepath.Join(parityDir, "model"), WithDevice(DeviceCPU))
	k := c.Concepts()
	if len(k.Embeds) != 17 || len(k.Thresholds) != 17 || len(k.SpecialEmbeds) != 3 || len(k.SpecialThresholds) != 3 ||
		len(k.Embeds[0]) != c.Info().ProjectionDim {
		t.Fatalf("concept shapes %d/%d/%d/%d", len(k.Embeds), len(k.Thresholds), len(k.SpecialEmbeds), len(k.SpecialThresholds))
	}
	k.Thresholds[0] = 42 // a copy: the checker is unaffected
	if c.Concepts().Thresholds[0] == 42 {
		t.Error("Concepts returned the checker's own slice")
	}
}
