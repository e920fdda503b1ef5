package safety

// The CUDA path: tests that need a CUDA build of gotch (cmd/safety-setup with -cuda on or a
// libtorch whose CUDA libraries resolve) and a visible GPU, and skip cleanly otherwise. On the GPU machine
// scripts/device-check.sh builds and runs them (docs/cuda.md); every test name contains "CUDA", so
// `go test -run CUDA .` runs exactly these.
//
// Environment:
//
//	SAFETY_PARITY_DIR          the parity fixture (default ../shared/parity)
//	SAFETY_CUDA_FULLSIZE       a folder made by `reference/bench_cuda.py make-model` (model/, inputs.f32 and the
//	                           reference's answers computed on the same GPU) for TestCUDAFullSize
//	SAFETY_CUDA_MEM_MODEL      the model TestCUDAMemoryStable checks with (default: the golden tiny_quickgelu)
//	SAFETY_CUDA_MEM_DTYPE      its dtype (default float32); SAFETY_CUDA_MEM_CHECKS how many checks (1000)
//	SAFETY_CUDA_BENCH_MODEL    the model TestCUDABenchmark times (the benchmark is skipped when unset)
//	SAFETY_CUDA_BENCH_INPUTS   float32 LE pixel values [N,3,S,S] it tiles to each batch (default: random)
//	SAFETY_CUDA_BENCH_OUT      where it appends its JSON Lines (reference/bench_cuda.py combine reads them)
//	SAFETY_CUDA_BENCH_DTYPES   default float16,bfloat16; SAFETY_CUDA_BENCH_BATCHES default 1,8,32,128
//	SAFETY_CUDA_BENCH_SECONDS  timed seconds per dtype and batch (default 2)
//	SAFETY_CUDA_ALLOW_CPU=1    run TestCUDAFullSize and TestCUDABenchmark on the CPU when there is no CUDA
//	                           (a dry run of their code: scripts/device-check.sh with DEVICE_CHECK_DRYRUN=1)

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/gotchutil"
	"github.com/sdsafety/safety/internal/testbuild"
)

// flopsPerImage is the ViT-L/14 safety checker's cost per 224×224 image (multiply-adds counted twice).
const flopsPerImage = 162e9

var (
	cudaOnce sync.Once
	cudaOK   bool
)

// cudaAvailable reports whether libtorch sees a CUDA device (false on a CPU-only build).
func cudaAvailable() bool {
	cudaOnce.Do(func() { cudaOK = gotch.CUDA.IsAvailable() })
	return cudaOK
}

// cudaOrDryRun returns DeviceCUDA, or DeviceCPU without CUDA when SAFETY_CUDA_ALLOW_CPU=1; else it skips.
func cudaOrDryRun(t testing.TB) Device {
	t.Helper()
	if cudaAvailable() {
		return DeviceCUDA
	}
	if os.Getenv("SAFETY_CUDA_ALLOW_CPU") != "1" {
		needCUDA(t)
	}
	t.Log("no CUDA: running on the CPU (SAFETY_CUDA_ALLOW_CPU=1, a dry run)")
	return DeviceCPU
}

func needCUDA(t testing.TB) {
	t.Helper()
	if !cudaAvailable() {
		b := gotchutil.Build()
		t.Skipf("CUDA not available (gotch.CUDA.IsAvailable() is false; libtorch %q, CUDA libraries linked: %v)",
			b.Libtorch, b.CUDA)
	}
}

func cudaParityDir() string {
	if d := os.Getenv("SAFETY_PARITY_DIR"); d != "" {
		return d
	}
	return parityDir
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// cudaCase is a model with the reference's answers for a set of images.
type cudaCase struct {
	name      string
	model     string
	imagesDir string
	exp       expectedFile
}

// cudaCases: the parity fixture's model and every golden model (the configurations: activations, eps, odd
// sizes, config defaults), each with its expected.json.
func cudaCases(t *testing.T) []cudaCase {
	t.Helper()
	var cases []cudaCase
	if dir := cudaParityDir(); fileExists(filepath.Join(dir, "expected", "expected.json")) {
		cases = append(cases, cudaCase{"parity", filepath.Join(dir, "model"), filepath.Join(dir, "images"),
			readExpected(t, filepath.Join(dir, "expected", "expected.json"))})
	} else {
		t.Logf("no parity fixture at %s (set SAFETY_PARITY_DIR)", dir)
	}
	models, _ := filepath.Glob(filepath.Join(goldenDir, "models", "*", "expected.json"))
	for _, path := range models {
		cases = append(cases, cudaCase{"golden/" + filepath.Base(filepath.Dir(path)), filepath.Dir(path),
			filepath.Join(goldenDir, "images"), readExpected(t, path)})
	}
	if len(cases) == 0 {
		t.Skip("neither the parity fixture nor golden models are present")
	}
	return cases
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// checkAll preprocesses every expected image on the host and checks them in one CheckPixels call
// (batches of the checker's batch size).
func checkAll(t *testing.T, c *Checker, cs cudaCase) []Result {
	t.Helper()
	var all []float32
	for _, e := range cs.exp.Images {
		p, err := c.PreprocessFile(filepath.Join(cs.imagesDir, e.File))
		if err != nil {
			t.Fatalf("%s: %v", e.File, err)
		}
		all = append(all, p...)
	}
	res, err := c.CheckPixels(context.Background(), all, len(cs.exp.Images))
	if err != nil {
		t.Fatalf("%s: CheckPixels: %v", cs.name, err)
	}
	return res
}

func sameVerdict(a Result, nsfw bool, bad, special []int) bool {
	return a.NSFW == nsfw && slices.Equal(a.BadConcepts, bad) && slices.Equal(a.SpecialConcepts, special)
}

// TestCUDAAutoSelect: DeviceAuto picks the GPU when there is one. Without CUDA it checks the fallback
// (auto runs on the CPU, DeviceCUDA is refused with ErrNoCUDA) and then skips.
func TestCUDAAutoSelect(t *testing.T) {
	model := testModelDir
	b := gotchutil.Build()
	if !cudaAvailable() {
		c := mustLoad(t, model)
		if got := c.Info().Device; got != DeviceCPU {
			t.Errorf("without CUDA, auto selected %q, want cpu", got)
		}
		if _, err := Load(model, WithDevice(DeviceCUDA)); !errors.Is(err, ErrNoCUDA) {
			t.Errorf("without CUDA, WithDevice(cuda) gave %v, want ErrNoCUDA", err)
		}
		needCUDA(t)
	}
	t.Logf("libtorch %s, CUDA linked %v, %d device(s), cuDNN %v, %d of %d wrappers stubbed",
		b.Libtorch, b.CUDA, gotch.CUDA.DeviceCount(), gotch.CUDA.CudnnIsAvailable(), len(b.StubbedOps),
		b.GeneratedWrappers)
	c := mustLoad(t, model)
	if got := c.Info().Device; got != DeviceCUDA {
		t.Fatalf("auto selected %q with CUDA available, want cuda", got)
	}
	if !c.Info().SDPA {
		t.Errorf("scaled_dot_product_attention is not used on CUDA (libtorch %s)", b.Libtorch)
	}
	pix, err := c.PreprocessFile(testImage("sd_512x512.png"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckPixels(context.Background(), pix, 1); err != nil {
		t.Fatalf("a check on CUDA: %v", err)
	}
	if got := mustLoad(t, model, WithDevice(DeviceCPU)).Info().Device; got != DeviceCPU {
		t.Errorf("WithDevice(cpu) selected %q", got)
	}
}

// TestCUDAParityFloat32: the parity fixture and every golden model on the GPU in float32: same verdicts
// as the reference, cosines and scores within 1e-3 (a rounded score at most one 0.001 step off),
// image_embeds within 1e-3 relative error.
func TestCUDAParityFloat32(t *testing.T) {
	needCUDA(t)
	for _, cs := range cudaCases(t) {
		t.Run(cs.name, func(t *testing.T) {
			c := mustLoad(t, cs.model, WithDevice(DeviceCUDA), WithBatchSize(4))
			res := checkAll(t, c, cs)
			var embErr, cosErr, scoreErr float64
			for i, e := range cs.exp.Images {
				r := res[i]
				if !sameVerdict(r, e.NSFW, e.BadConcepts, e.SpecialCare) {
					t.Errorf("%s: verdict nsfw=%v bad=%v special=%v, want nsfw=%v bad=%v special=%v", e.File,
						r.NSFW, r.BadConcepts, r.SpecialConcepts, e.NSFW, e.BadConcepts, e.SpecialCare)
				}
				embErr = max(embErr, relErr(r.ImageEmbeds, e.ImageEmbeds))
				if e.PooledOutput != nil {
					embErr = max(embErr, relErr(r.PooledOutput, e.PooledOutput))
				}
				cosErr = max(cosErr, maxAbs(r.CosDist, e.CosDist), maxAbs(r.SpecialCosDist, e.SpecialCosDist))
				scoreErr = max(scoreErr, maxAbs(r.ConceptScores, e.ConceptScores), maxAbs(r.SpecialScores, e.SpecialScores))
			}
			t.Logf("CUDA float32 %s: %d images, embeddings rel. err %.2e, cosines %.2e, rounded scores %.4f",
				cs.name, len(res), embErr, cosErr, scoreErr)
			if embErr > 1e-3 {
				t.Errorf("image_embeds/pooled_output relative error %.2e > 1e-3", embErr)
			}
			if cosErr > 1e-3 {
				t.Errorf("cosine similarity error %.2e > 1e-3", cosErr)
			}
			if scoreErr > 0.0011 {
				t.Errorf("rounded scores differ by %.4f (more than one rounding step)", scoreErr)
			}
		})
	}
}

// halfCheck compares a float16 or bfloat16 run with the float32 one on the same GPU: it returns the largest
// cosine difference and, for every image whose float32 scores all lie farther than the margin from the
// rounding edge (margin = 2·that difference + 0.002: far enough that rounding the weights and activations
// cannot move them across it), requires the same verdict. Images nearer the edge (the fixture's +0.0004 and
// +0.0007 cases are there by design) are counted, not compared.
func halfCheck(t *testing.T, name string, c32 *Checker, r32, rh []Result) (cosErr float64, compared, near int) {
	t.Helper()
	for i := range r32 {
		cosErr = max(cosErr, maxAbs(rh[i].CosDist, f64(r32[i].CosDist)),
			maxAbs(rh[i].SpecialCosDist, f64(r32[i].SpecialCosDist)))
	}
	margin := 2*cosErr + 0.002
	for i := range r32 {
		if edgeDistance(c32.concepts, r32[i]) <= margin {
			near++
			continue
		}
		compared++
		if !sameVerdict(rh[i], r32[i].NSFW, r32[i].BadConcepts, r32[i].SpecialConcepts) {
			t.Errorf("%s image %d: verdict nsfw=%v bad=%v special=%v, float32 gives nsfw=%v bad=%v special=%v "+
				"(every float32 score > %.4f from the edge)", name, i, rh[i].NSFW, rh[i].BadConcepts,
				rh[i].SpecialConcepts, r32[i].NSFW, r32[i].BadConcepts, r32[i].SpecialConcepts, margin)
		}
	}
	return cosErr, compared, near
}

// edgeDistance is how far the unrounded scores of r (cos − threshold + special-care adjustment, as
// Concepts.score computes them) are from 0.0005, where rounding to 3 decimals turns a score into a hit.
func edgeDistance(c *Concepts, r Result) float64 {
	d := math.Inf(1)
	adj := 0.0
	for k, cos := range r.SpecialCosDist {
		s := float64(cos) - float64(c.SpecialThresholds[k]) + adj
		d = min(d, math.Abs(s-0.0005))
		if s > 0.0005 {
			adj = float64(specialCareAdjustment)
		}
	}
	for k, cos := range r.CosDist {
		d = min(d, math.Abs(float64(cos)-float64(c.Thresholds[k])+adj-0.0005))
	}
	return d
}

// halfBound is the largest cosine difference from float32 accepted for a dtype (gross errors, such as an
// overflow or a wrong cast, are far above it).
var halfBound = map[DType]float64{Float16: 0.02, BFloat16: 0.06}

// TestCUDAHalfVerdicts: float16 and bfloat16 on the GPU give the verdicts float32 gives, for every image
// not within rounding distance of a threshold.
func TestCUDAHalfVerdicts(t *testing.T) {
	needCUDA(t)
	cases := cudaCases(t)
	for _, dt := range []DType{Float16, BFloat16} {
		t.Run(string(dt), func(t *testing.T) {
			var compared, near int
			for _, cs := range cases {
				c32 := mustLoad(t, cs.model, WithDevice(DeviceCUDA), WithBatchSize(4))
				ch := mustLoad(t, cs.model, WithDevice(DeviceCUDA), WithDType(dt), WithBatchSize(4))
				r32, rh := checkAll(t, c32, cs), checkAll(t, ch, cs)
				cosErr, n, m := halfCheck(t, cs.name, c32, r32, rh)
				compared, near = compared+n, near+m
				t.Logf("CUDA %s %s (%s): cosines within %.2e of float32; %d images compared, %d near the edge",
					dt, cs.name, filepath.Base(ch.Info().WeightsFile), cosErr, n, m)
				if cosErr > halfBound[dt] {
					t.Errorf("%s: %s cosines differ from float32 by %.2e > %.2e", cs.name, dt, cosErr, halfBound[dt])
				}
				c32.Close()
				ch.Close()
			}
			if compared == 0 {
				t.Errorf("no image was far enough from the edge to compare (%d near it)", near)
			}
		})
	}
}

// TestCUDAFullSize: the real ViT-L/14 shapes against transformers' answers computed on the same GPU
// (reference/bench_cuda.py make-model): float32 within 1e-3, float16 and bfloat16 with the same verdicts.
func TestCUDAFullSize(t *testing.T) {
	dir := os.Getenv("SAFETY_CUDA_FULLSIZE")
	if dir == "" {
		t.Skip("SAFETY_CUDA_FULLSIZE not set (a folder made by reference/bench_cuda.py make-model)")
	}
	device := cudaOrDryRun(t)
	var exp struct {
		Results   []expectedImage `json:"results"`
		MinMargin float64         `json:"min_margin"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	pix := readF32(t, filepath.Join(dir, "inputs.f32"))
	n := len(exp.Results)
	model := filepath.Join(dir, "model")
	c32 := mustLoad(t, model, WithDevice(device), WithBatchSize(n))
	r32, err := c32.CheckPixels(context.Background(), pix, n)
	if err != nil {
		t.Fatal(err)
	}
	var embErr, cosErr float64
	for i, e := range exp.Results {
		embErr = max(embErr, relErr(r32[i].ImageEmbeds, e.ImageEmbeds), relErr(r32[i].PooledOutput, e.PooledOutput))
		cosErr = max(cosErr, maxAbs(r32[i].CosDist, e.CosDist), maxAbs(r32[i].SpecialCosDist, e.SpecialCosDist))
		if !sameVerdict(r32[i], e.NSFW, e.BadConcepts, e.SpecialCare) {
			t.Errorf("float32 input %d: verdict nsfw=%v bad=%v special=%v, want %v %v %v", i, r32[i].NSFW,
				r32[i].BadConcepts, r32[i].SpecialConcepts, e.NSFW, e.BadConcepts, e.SpecialCare)
		}
	}
	t.Logf("%s float32 %s: %d inputs, embeddings rel. err %.2e, cosines %.2e (designed margin %.4f)",
		device, filepath.Base(dir), n, embErr, cosErr, exp.MinMargin)
	if embErr > 1e-3 || cosErr > 1e-3 {
		t.Errorf("float32 differs from the reference on the same GPU: embeddings %.2e, cosines %.2e (> 1e-3)", embErr, cosErr)
	}
	for _, dt := range []DType{Float16, BFloat16} {
		ch := mustLoad(t, model, WithDevice(device), WithDType(dt), WithBatchSize(n))
		rh, err := ch.CheckPixels(context.Background(), pix, n)
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		cosErr, compared, near := halfCheck(t, string(dt), c32, r32, rh)
		t.Logf("%s %s %s: cosines within %.2e of float32; %d inputs compared, %d near the edge",
			device, dt, filepath.Base(dir), cosErr, compared, near)
		if cosErr > halfBound[dt] {
			t.Errorf("%s cosines differ from float32 by %.2e > %.2e", dt, cosErr, halfBound[dt])
		}
		ch.Close()
	}
}

// gpuMemMiB reads the GPU memory in use through nvidia-smi: this process's, when nvidia-smi lists it
// (not inside some containers, where it sees other PIDs), else the whole first GPU's (the device check
// runs alone on its GPU). gotch has no call for the CUDA caching allocator's statistics.
func gpuMemMiB() (mib int, source string, ok bool) {
	out, err := exec.Command("nvidia-smi", "--query-compute-apps=pid,used_memory",
		"--format=csv,noheader,nounits").Output()
	if err == nil {
		pid := strconv.Itoa(os.Getpid())
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Split(line, ",")
			if len(f) == 2 && strings.TrimSpace(f[0]) == pid {
				if v, err := strconv.Atoi(strings.TrimSpace(f[1])); err == nil {
					return v, "nvidia-smi compute-apps (this process)", true
				}
			}
		}
	}
	out, err = exec.Command("nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return 0, "", false
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	v, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, "", false
	}
	return v, "nvidia-smi memory.used (whole GPU 0)", true
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// randomPixels returns n deterministic pseudo-random images of side s (normal-ish values, like pixel values).
func randomPixels(n, s int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 2))
	p := make([]float32, n*3*s*s)
	for i := range p {
		p[i] = float32(r.NormFloat64())
	}
	return p
}

// TestCUDAMemoryStable: 1,000 checks (batches of 1 to 4 images) leave the GPU memory in use and the number
// of live tensors where they were after a warm-up.
func TestCUDAMemoryStable(t *testing.T) {
	needCUDA(t)
	model := os.Getenv("SAFETY_CUDA_MEM_MODEL")
	if model == "" {
		model = testModelDir
	}
	needTracked(t, model)
	dt := DType(os.Getenv("SAFETY_CUDA_MEM_DTYPE"))
	if dt == "" {
		dt = Float32
	}
	n := envInt("SAFETY_CUDA_MEM_CHECKS", 1000)
	c := mustLoad(t, model, WithDevice(DeviceCUDA), WithDType(dt), WithBatchSize(4))
	s := c.Info().ImageSize
	per := 3 * s * s
	pix := randomPixels(4, s, 7)
	ctx := context.Background()
	check := func(i int) {
		b := 1 + i%4
		if _, err := c.CheckPixels(ctx, pix[:b*per], b); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	for i := range 40 {
		check(i)
	}
	mem0, source, ok := gpuMemMiB()
	live0, rss0 := gotchutil.LiveTensors(), rssMiB()
	start := time.Now()
	for i := range n {
		check(i)
	}
	elapsed := time.Since(start)
	mem1, _, _ := gpuMemMiB()
	live1, rss1 := gotchutil.LiveTensors(), rssMiB()
	t.Logf("CUDAMEM checks=%d dtype=%s model=%s gpu_before_mib=%d gpu_after_mib=%d gpu_growth_mib=%d source=%q "+
		"live_tensors=%d->%d rss_mib=%.0f->%.0f (%.1f s)", n, dt, model, mem0, mem1, mem1-mem0, source, live0, live1,
		rss0, rss1, elapsed.Seconds())
	if live1 != live0 {
		t.Errorf("live tensors %d after %d checks, %d before", live1, n, live0)
	}
	if !ok {
		t.Log("GPU memory not readable (no nvidia-smi): only the live tensors were compared")
		return
	}
	if mem1-mem0 > 16 {
		t.Errorf("GPU memory grew by %d MiB over %d checks (%d -> %d MiB)", mem1-mem0, n, mem0, mem1)
	}
}

// benchRecord is one line of TestCUDABenchmark's JSON Lines; reference/bench_cuda.py combine joins it
// with the reference's by dtype and batch.
type benchRecord struct {
	Side        string      `json:"side"`
	What        string      `json:"what"`
	DType       string      `json:"dtype"`
	Batch       int         `json:"batch"`
	Iters       int         `json:"iters"`
	MedianS     float64     `json:"median_s"`
	MeanS       float64     `json:"mean_s"`
	ImgS        float64     `json:"img_s"`
	ImgSMean    float64     `json:"img_s_mean"`
	TFLOPS      float64     `json:"tflops"`
	Device      string      `json:"device"`
	SDPA        bool        `json:"sdpa"`
	Libtorch    string      `json:"libtorch"`
	LoadS       float64     `json:"load_s"`
	GPUMemMiB   int         `json:"gpu_mem_mib,omitempty"`
	NSFW        []bool      `json:"nsfw"`
	BadConcepts [][]int     `json:"bad_concepts"`
	Embeds      [][]float32 `json:"embeds"`
}

// TestCUDABenchmark times CheckPixels (float32 pixel values on the host → device and dtype → model → scores
// on the host, the same work reference/bench_cuda.py bench times) for each dtype and batch size: 3 warm-up
// calls, then at least 3 and until SAFETY_CUDA_BENCH_SECONDS have passed; img_s is from the median call.
func TestCUDABenchmark(t *testing.T) {
	model := os.Getenv("SAFETY_CUDA_BENCH_MODEL")
	if model == "" {
		t.Skip("SAFETY_CUDA_BENCH_MODEL not set")
	}
	device := cudaOrDryRun(t)
	dtypes := strings.Split(orDefault(os.Getenv("SAFETY_CUDA_BENCH_DTYPES"), "float16,bfloat16"), ",")
	var batches []int
	for _, f := range strings.Split(orDefault(os.Getenv("SAFETY_CUDA_BENCH_BATCHES"), "1,8,32,128"), ",") {
		b, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || b <= 0 {
			t.Fatalf("SAFETY_CUDA_BENCH_BATCHES: bad batch %q", f)
		}
		batches = append(batches, b)
	}
	seconds := 2.0
	if v, err := strconv.ParseFloat(os.Getenv("SAFETY_CUDA_BENCH_SECONDS"), 64); err == nil && v > 0 {
		seconds = v
	}
	var out *os.File
	if p := os.Getenv("SAFETY_CUDA_BENCH_OUT"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out = f
	}
	maxB := slices.Max(batches)
	ctx := context.Background()
	for _, d := range dtypes {
		dt := DType(strings.TrimSpace(d))
		start := time.Now()
		c, err := Load(model, WithDevice(device), WithDType(dt), WithBatchSize(maxB))
		if err != nil {
			t.Fatalf("Load %s: %v", dt, err)
		}
		loadS := time.Since(start).Seconds()
		s := c.Info().ImageSize
		per := 3 * s * s
		var base []float32
		if p := os.Getenv("SAFETY_CUDA_BENCH_INPUTS"); p != "" {
			base = readF32(t, p)
		} else {
			base = randomPixels(8, s, 11)
		}
		if len(base) == 0 || len(base)%per != 0 {
			t.Fatalf("inputs: %d values, not a whole number of %d-value images", len(base), per)
		}
		pix := make([]float32, 0, maxB*per)
		for len(pix) < maxB*per {
			pix = append(pix, base[:min(len(base), maxB*per-len(pix))]...)
		}
		for _, b := range batches {
			var last []Result
			call := func() time.Duration {
				t0 := time.Now()
				res, err := c.CheckPixels(ctx, pix[:b*per], b)
				if err != nil {
					t.Fatalf("%s batch %d: %v", dt, b, err)
				}
				last = res
				return time.Since(t0)
			}
			for range 3 {
				call()
			}
			var times []float64
			total := 0.0
			for len(times) < 3 || (total < seconds && len(times) < 2000) {
				d := call().Seconds()
				times = append(times, d)
				total += d
			}
			sorted := slices.Clone(times)
			sort.Float64s(sorted)
			med := sorted[len(sorted)/2]
			if len(sorted)%2 == 0 {
				med = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
			}
			rec := benchRecord{Side: "go", What: "check", DType: string(dt), Batch: b, Iters: len(times),
				MedianS: med, MeanS: total / float64(len(times)), ImgS: float64(b) / med,
				ImgSMean: float64(b*len(times)) / total, TFLOPS: float64(b) / med * flopsPerImage / 1e12,
				Device: string(c.Info().Device), SDPA: c.Info().SDPA, Libtorch: c.Info().Libtorch, LoadS: loadS}
			if mib, _, ok := gpuMemMiB(); ok {
				rec.GPUMemMiB = mib
			}
			for i := range min(8, len(last)) {
				rec.NSFW = append(rec.NSFW, last[i].NSFW)
				rec.BadConcepts = append(rec.BadConcepts, last[i].BadConcepts)
			}
			for i := range min(2, len(last)) {
				rec.Embeds = append(rec.Embeds, last[i].ImageEmbeds)
			}
			line, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s batch %d: %.1f img/s (median of %d calls), %.1f TFLOP/s", dt, b, rec.ImgS, rec.Iters, rec.TFLOPS)
			if out != nil {
				if _, err := out.Write(append(line, '\n')); err != nil {
					t.Fatal(err)
				}
			} else {
				fmt.Println(string(line))
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// orDefault returns v, or def when v is blank.
func orDefault(v, def string) string {
	if v = strings.TrimSpace(v); v == "" {
		return def
	}
	return v
}

// ---- GPU-only paths: CheckTensor on CUDA tensors, the text encoder on CUDA, float16 non-finite detection ----

// cudaTestTensor returns data as a tensor of the given dtype and shape on the first GPU (dropped when
// the test ends).
func cudaTestTensor(t *testing.T, c *Checker, data []float32, dtype gotch.DType, shape ...int64) *ts.Tensor {
	t.Helper()
	x := newTestTensor(t, c, data, dtype, shape...)
	var y *ts.Tensor
	if err := c.rt.Run(func() error {
		var err error
		y, err = x.ToDevice(gotch.CudaBuilder(0), dtype, false, false, false)
		return gotchutil.TorchError("to_device", err)
	}); err != nil {
		t.Fatal(err)
	}
	dropOnCleanup(t, c, y)
	return y
}

// tensorDevice returns the device x lives on.
func tensorDevice(t *testing.T, c *Checker, x *ts.Tensor) gotch.Device {
	t.Helper()
	var d gotch.Device
	if err := c.rt.Run(func() error {
		var err error
		d, err = x.Device()
		return gotchutil.TorchError("device", err)
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCUDACheckTensor runs the golden tensor-path batch through CheckTensor as a CUDA tensor, in
// float32 and float16, on both paths: the exact path's 8-bit images are diffusers' for that dtype, the
// verdicts are the reference's, the embeddings close to it (float32 exact: 1e-3 relative, as
// TestCUDAParityFloat32; float16 or the fast path: 0.02), and Images stays on the GPU in the input's
// dtype, equal to the input with the flagged images zeroed.
func TestCUDACheckTensor(t *testing.T) {
	needCUDA(t)
	g, in, _ := readTensorGolden(t)
	halfUint8SHA256 := readHalfUint8SHA256(t, len(g.Images))
	c := mustLoad(t, filepath.Join(goldenDir, g.Model), WithDevice(DeviceCUDA))
	for _, dt := range []gotch.DType{gotch.Float, gotch.Half} {
		for _, fast := range []bool{false, true} {
			t.Run(dt.String()+map[bool]string{false: "/exact", true: "/fast"}[fast], func(t *testing.T) {
				x := cudaTestTensor(t, c, in, dt, g.Input.Shape...)
				if d := tensorDevice(t, c, x); d != gotch.CudaBuilder(0) {
					t.Fatalf("input on %v, want cuda:0", d)
				}
				bound := 1e-3
				if fast || dt != gotch.Float {
					bound = 0.02
				}
				images := checkGoldenTensor(t, c, g, x, dt, fast, halfUint8SHA256, bound)
				if d := tensorDevice(t, c, images); d != gotch.CudaBuilder(0) {
					t.Errorf("Images on %v, want cuda:0 (the input's device)", d)
				}
			})
		}
	}
}

// TestCUDATextEncoder runs the text encoder on the GPU: float32 matches the reference as on the CPU
// (checkTextGolden: 1e-4), float16 and bfloat16 (float16 cannot run on the CPU) within 5e-2, and a
// custom concept added through a CUDA text encoder to a CUDA checker scores the reference's cosines.
func TestCUDATextEncoder(t *testing.T) {
	needCUDA(t)
	g := readTextGolden(t)
	dir := filepath.Join(textGoldenDir, "clip")
	e := mustLoadText(t, dir, WithDevice(DeviceCUDA))
	if got := e.Info().Device; got != DeviceCUDA {
		t.Fatalf("text encoder on %q, want cuda", got)
	}
	embedErr, pooledErr := checkTextGolden(t, e, g)
	t.Logf("CUDA float32: max relative error: text_embeds %.2e, pooled %.2e", embedErr, pooledErr)

	texts := make([]string, len(g.Texts))
	for i, x := range g.Texts {
		texts[i] = x.Text
	}
	for _, dt := range []DType{Float16, BFloat16} {
		h := mustLoadText(t, dir, WithDevice(DeviceCUDA), WithDType(dt))
		got, err := h.Embed(context.Background(), texts)
		if err != nil {
			t.Fatalf("%s: %v", dt, err)
		}
		worst := 0.0
		for i := range texts {
			worst = max(worst, vecRelErr(got[i], g.Texts[i].TextEmbeds))
		}
		t.Logf("CUDA %s: max relative error %.2e", dt, worst)
		if worst > 5e-2 {
			t.Errorf("CUDA %s: max relative error %.2e > 5e-2", dt, worst)
		}
	}

	c := mustLoad(t, filepath.Join(goldenDir, g.Concepts.Checker), WithDevice(DeviceCUDA))
	if err := c.SetTextEncoder(e); err != nil {
		t.Fatal(err)
	}
	for _, text := range g.Concepts.Texts {
		if err := c.AddConcept(text, text, 0); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range g.Concepts.Images {
		res, err := c.CheckPixels(context.Background(), readPixelDump(t, name), 1)
		if err != nil {
			t.Fatal(err)
		}
		for k, s := range res[0].CustomScores {
			if d := math.Abs(float64(s.Cos) - g.Concepts.Cos[i][k]); d > 1e-3 {
				t.Errorf("%s / %q: cos %v, reference %v", name, s.Name, s.Cos, g.Concepts.Cos[i][k])
			}
		}
	}
}

// TestCUDAFloat16NonFinite checks the detection of non-finite values where float16 really runs (the
// CPU build cannot): a float16 checker whose MLP weights overflow float16 (fc1 and fc2 of layer 0
// set to 200·(1, 2, 3, …), as TestNonFiniteOutputIsAnError does) and NaN/±Inf pixels in float16 give
// ErrNonFinite and no results; float16 CUDA tensors holding NaN/±Inf are refused by CheckTensor
// (ErrInvalidInput) on both paths.
func TestCUDAFloat16NonFinite(t *testing.T) {
	needCUDA(t)
	s := 224
	img := make([]float32, 3*s*s)
	for i := range img {
		img[i] = float32(i%97)/50 - 1
	}
	overflow := newTinyModel(t)
	for _, name := range []string{"encoder.layers.0.mlp.fc1.weight", "encoder.layers.0.mlp.fc2.weight"} {
		x := overflow.find(t, name)
		v := make([]float32, len(x.Data)/4)
		for i := range v {
			v[i] = 200 * float32(1+i%3)
		}
		x.Data = testbuild.Float32LE(v)
	}
	withValue := func(v float32) []float32 {
		p := slices.Clone(img)
		for i := 100; i < 400; i++ {
			p[i] = v
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		model  string
		pixels []float32
	}{
		{"weights overflow float16", overflow.write(t), img},
		{"NaN pixels", newTinyModel(t).write(t), withValue(float32(math.NaN()))},
		{"+Inf pixels", newTinyModel(t).write(t), withValue(float32(math.Inf(1)))},
		{"-Inf pixels", newTinyModel(t).write(t), withValue(float32(math.Inf(-1)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, tc.model, WithDevice(DeviceCUDA), WithDType(Float16))
			for _, batch := range [][]float32{tc.pixels, append(slices.Clone(img), tc.pixels...)} {
				n := len(batch) / (3 * s * s)
				res, err := c.CheckPixels(context.Background(), batch, n)
				if !errors.Is(err, ErrNonFinite) || res != nil {
					t.Errorf("batch of %d: %d results, error %v; want ErrNonFinite and no results", n, len(res), err)
				}
			}
		})
	}

	g, _, _ := readTensorGolden(t)
	c := mustLoad(t, filepath.Join(goldenDir, g.Model), WithDevice(DeviceCUDA))
	for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		data := make([]float32, 2*3*64*96)
		for i := range data {
			data[i] = float32(i%17)/10 - 0.8
		}
		data[777] = v
		for _, fast := range []bool{false, true} {
			x := cudaTestTensor(t, c, data, gotch.Half, 2, 3, 64, 96)
			res, err := c.CheckTensor(context.Background(), x, &TensorOptions{Fast: fast})
			if !errors.Is(err, ErrInvalidInput) || res != nil {
				t.Errorf("float16 CUDA tensor holding %v (fast=%v): error %v; want ErrInvalidInput and no result", v, fast, err)
			}
		}
	}
}
