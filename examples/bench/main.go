// Command bench times this module's side of the safety checker the way reference/bench_reference.py
// times the Python reference, and prints one JSON line.
//
//	bench --model DIR --images DIR --batch N --dtype float32|bfloat16 --threads T --mode MODE --iters K
//
// Modes:
//
//	e2e    each iteration reads --batch PNG files from disk, decodes and preprocesses them (in parallel
//	       goroutines), runs the model and scores them; images_per_s counts all of it.
//	model  preprocessing once beforehand; each iteration times only CheckPixels on the pixel values.
//	cold   one image, from process start (--t0, a Unix time taken just before starting the process, or
//	       else the start time the kernel recorded for it) to the first verdict, model load included.
//	load   loads and closes the checker --iters times; seconds is the median load time.
//	sgemm  a --size³ matrix product (2048 by default) through gotch in --dtype, --warmup untimed then
//	       --iters timed; gflops is the rate of the median product.
//	gemm   the float32 products of the model's linear layers at --batch (257·batch rows by 1024→1024,
//	       1024→3072, 1024→4096, 4096→1024), computed as --op: linear (x·wᵀ + b, as the model runs them),
//	       matmul_t (x·wᵀ through a transposed view, no bias), matmul_kn (x times a contiguous [in, out]
//	       copy of the weight); "gemm_gflops" lists the median rate of each shape.
//	images writes --count deterministic --size×--size PNG images into --images (the benchmark inputs).
//
// Output: {"mode", "images_per_s", "seconds", "iters", "batch", "images", "dtype", "threads", "device", "mkl_intel_path",
// "peak_rss_mb" (getrusage ru_maxrss), "libtorch", "go", "load_s", "nsfw", …}; model and e2e add
// "gflops" (the rate on the work this module does, "executed_flops_per_image") and "gflops_162" (at the
// reference's "flops_per_image", 162.0 GFLOP for ViT-L/14), sgemm "gflops"; cold adds "startup_s"
// (process start to main) and "first_batch_s".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety"
	"github.com/sdsafety/safety/internal/gotchutil"
)

// mainStart is the earliest Go-side timestamp (package initialisation), for the cold-start breakdown.
var mainStart = time.Now()

type config struct {
	model, images, dtype, mode string
	batch, threads, iters      int
	warmup, size, count        int
	t0                         float64
	op                         string
	mapped                     bool
}

type result struct {
	Mode          string    `json:"mode"`
	ImagesPerS    float64   `json:"images_per_s,omitempty"`
	Seconds       float64   `json:"seconds"`
	Iters         int       `json:"iters"`
	Batch         int       `json:"batch,omitempty"`
	Images        int       `json:"images,omitempty"`
	DType         string    `json:"dtype"`
	Threads       int       `json:"threads"`
	Device        string    `json:"device"`
	PeakRSSMB     float64   `json:"peak_rss_mb"`
	Libtorch      string    `json:"libtorch"`
	Go            string    `json:"go"`
	GFLOPS        float64   `json:"gflops,omitempty"`
	FLOPsPerImage float64   `json:"flops_per_image,omitempty"`
	ExecFLOPs     float64   `json:"executed_flops_per_image,omitempty"`
	RefGFLOPS     float64   `json:"gflops_162,omitempty"`
	LoadS         float64   `json:"load_s,omitempty"`
	StartupS      float64   `json:"startup_s,omitempty"`
	FirstBatchS   float64   `json:"first_batch_s,omitempty"`
	AllS          []float64 `json:"all_s,omitempty"`
	SDPA          bool      `json:"sdpa,omitempty"`
	Model         string    `json:"model,omitempty"`
	NSFW          []bool    `json:"nsfw,omitempty"`
	Op            string    `json:"op,omitempty"`
	MKLIntelPath  bool      `json:"mkl_intel_path,omitempty"`
	GemmShapes    []string  `json:"gemm_shapes,omitempty"`
	GemmGFLOPS    []float64 `json:"gemm_gflops,omitempty"`
}

func main() {
	var c config
	flag.StringVar(&c.model, "model", "", "model directory (config.json, model.safetensors, preprocessor_config.json)")
	flag.StringVar(&c.images, "images", "", "folder of images (e2e, model, cold) or output folder (images)")
	flag.IntVar(&c.batch, "batch", 1, "images per model call")
	flag.StringVar(&c.dtype, "dtype", "float32", "float32 or bfloat16 (float16 also accepted)")
	flag.IntVar(&c.threads, "threads", 0, "libtorch intra-op threads (0: libtorch's default)")
	flag.StringVar(&c.mode, "mode", "e2e", "e2e, model, cold, load, sgemm, gemm or images")
	flag.StringVar(&c.op, "op", "linear", "gemm: linear, matmul_t or matmul_kn")
	flag.IntVar(&c.iters, "iters", 10, "timed iterations")
	flag.IntVar(&c.warmup, "warmup", 1, "untimed iterations first (e2e, model, sgemm)")
	flag.IntVar(&c.size, "size", 0, "matrix side (sgemm, default 2048) or image side (images, default 512)")
	flag.IntVar(&c.count, "count", 8, "number of images to write (images)")
	flag.BoolVar(&c.mapped, "mapped", true, "view the checkpoint's weights in place (safety.WithMappedWeights)")
	flag.Float64Var(&c.t0, "t0", 0, "process start as a Unix time (cold); default: the kernel's start time")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if c.iters <= 0 || c.batch <= 0 || c.warmup < 0 {
		return errors.New("--iters and --batch must be positive, --warmup non-negative")
	}
	switch c.mode {
	case "images":
		return writeImages(c)
	case "sgemm":
		return sgemm(c)
	case "gemm":
		return gemm(c)
	case "e2e", "model", "cold", "load":
		return benchChecker(c)
	}
	return fmt.Errorf("unknown --mode %q", c.mode)
}

func newResult(c config) result {
	_, intel := gotchutil.MKLDispatch() // the answer MKL's vendor check gets (SAFETY_MKL_INTEL_PATH)
	return result{Mode: c.mode, DType: c.dtype, Device: "cpu", Libtorch: gotchutil.Build().Libtorch,
		Go: runtime.Version(), Batch: c.batch, MKLIntelPath: intel}
}

func emit(r result) error {
	r.PeakRSSMB = peakRSSMB()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}

// peakRSSMB is getrusage(RUSAGE_SELF).ru_maxrss in MiB (Linux reports KiB), as the reference reports it.
func peakRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024
}

// processStart returns when the kernel started this process (/proc/self/stat starttime + boot time),
// or mainStart where that is not available.
func processStart() time.Time {
	stat, err1 := os.ReadFile("/proc/self/stat")
	procStat, err2 := os.ReadFile("/proc/stat")
	if err1 != nil || err2 != nil {
		return mainStart
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return mainStart
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return mainStart
	}
	ticks, err := strconv.ParseFloat(fields[19], 64) // field 22 of the whole line
	if err != nil {
		return mainStart
	}
	for line := range strings.Lines(string(procStat)) {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			bt, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				return mainStart
			}
			const clkTck = 100 // USER_HZ on Linux
			return time.Unix(bt, 0).Add(time.Duration(ticks / clkTck * float64(time.Second)))
		}
	}
	return mainStart
}

func listImages(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp":
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no images in %s", dir)
	}
	return files, nil
}

func checkerOptions(c config) []safety.Option {
	opts := []safety.Option{safety.WithDevice(safety.DeviceCPU), safety.WithDType(safety.DType(c.dtype)),
		safety.WithBatchSize(c.batch), safety.WithMappedWeights(c.mapped)}
	if c.threads > 0 {
		opts = append(opts, safety.WithThreads(c.threads))
	}
	return opts
}

func threadCount(c config) int {
	if c.threads > 0 {
		return c.threads
	}
	return gotchutil.NumThreads()
}

// preprocessFiles reads, decodes and preprocesses files in parallel goroutines into one
// [len(files), 3, S, S] buffer.
func preprocessFiles(ck *safety.Checker, files []string) ([]float32, error) {
	s := ck.Info().ImageSize
	per := 3 * s * s
	out := make([]float32, len(files)*per)
	errs := make([]error, len(files))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(files)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) {
					return
				}
				pix, err := ck.PreprocessFile(files[i])
				if err == nil && len(pix) != per {
					err = fmt.Errorf("%d pixel values, want %d", len(pix), per)
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s: %w", files[i], err)
					continue
				}
				copy(out[i*per:], pix)
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func verdicts(res []safety.Result) []bool {
	v := make([]bool, len(res))
	for i, r := range res {
		v[i] = r.NSFW
	}
	return v
}

// flopsPerImage is the work of one image through the vision tower and projection as the reference
// computes it (a multiply-add counts 2): the patch embedding; per layer the q, k, v and output
// projections (4·T·D²), the two attention products (2·T²·D) and the MLP (2·T·D·I); the visual
// projection (D·P). ViT-L/14 at 224×224 (T = 257): 162.03 GFLOP.
//
// executed is what this module computes: its last layer runs the query, the attention output, the MLP
// and the residuals for the class token only (keys and values for all T tokens), since nothing else
// of that layer's output is read: 156.39 GFLOP for ViT-L/14.
func flopsPerImage(v safety.VisionConfig, proj int) (reference, executed float64) {
	d, i := float64(v.HiddenSize), float64(v.IntermediateSize)
	g := float64(v.ImageSize / v.PatchSize)
	n := g * g
	t := n + 1
	patch := n * d * float64(v.NumChannels*v.PatchSize*v.PatchSize)
	layer := t*4*d*d + 2*t*t*d + 2*t*d*i
	last := layer
	if v.NumHiddenLayers > 0 {
		last = t*2*d*d + d*d + 2*t*d + d*d + 2*d*i
	}
	head := d * float64(proj)
	reference = 2 * (patch + float64(v.NumHiddenLayers)*layer + head)
	executed = reference
	if v.NumHiddenLayers > 0 {
		executed = 2 * (patch + float64(v.NumHiddenLayers-1)*layer + last + head)
	}
	return reference, executed
}

func benchChecker(c config) error {
	t0 := processStart()
	if c.t0 > 0 {
		t0 = time.Unix(0, int64(c.t0*1e9))
	}
	if c.model == "" {
		return errors.New("--model is required")
	}
	r := newResult(c)
	ctx := context.Background()
	if c.mode == "load" {
		var all []float64
		for range c.iters {
			start := time.Now()
			ck, err := safety.Load(c.model, checkerOptions(c)...)
			if err != nil {
				return err
			}
			all = append(all, time.Since(start).Seconds())
			r.SDPA = ck.Info().SDPA
			ck.Close()
		}
		r.AllS = all
		r.Seconds, r.LoadS, r.Iters, r.Batch = median(all), median(all), c.iters, 0
		r.Threads, r.Model = threadCount(c), c.model
		return emit(r)
	}
	if c.images == "" {
		return errors.New("--images is required")
	}
	files, err := listImages(c.images)
	if err != nil {
		return err
	}
	if c.mode == "cold" {
		files, c.batch = files[:1], 1
		r.Batch = 1
	}
	batchFiles := make([]string, c.batch)
	for i := range batchFiles {
		batchFiles[i] = files[i%len(files)]
	}

	loadStart := time.Now()
	ck, err := safety.Load(c.model, checkerOptions(c)...)
	if err != nil {
		return err
	}
	defer ck.Close()
	r.LoadS = time.Since(loadStart).Seconds()
	info := ck.Info()
	r.FLOPsPerImage, r.ExecFLOPs = flopsPerImage(info.Vision, info.ProjectionDim)
	r.SDPA, r.Model, r.Threads = info.SDPA, c.model, threadCount(c)

	var res []safety.Result
	switch c.mode {
	case "cold":
		pix, err := preprocessFiles(ck, batchFiles)
		if err != nil {
			return err
		}
		if res, err = ck.CheckPixels(ctx, pix, 1); err != nil {
			return err
		}
		r.Seconds, r.Iters, r.Images = time.Since(t0).Seconds(), 1, 1
		r.StartupS = mainStart.Sub(t0).Seconds()
		r.FirstBatchS = time.Since(loadStart).Seconds() - r.LoadS
	case "e2e":
		step := func() error {
			pix, err := preprocessFiles(ck, batchFiles)
			if err != nil {
				return err
			}
			res, err = ck.CheckPixels(ctx, pix, c.batch)
			return err
		}
		if r.Seconds, r.AllS, err = timeIters(c, step); err != nil {
			return err
		}
	case "model":
		pix, err := preprocessFiles(ck, batchFiles)
		if err != nil {
			return err
		}
		step := func() error {
			var err error
			res, err = ck.CheckPixels(ctx, pix, c.batch)
			return err
		}
		if r.Seconds, r.AllS, err = timeIters(c, step); err != nil {
			return err
		}
	}
	if c.mode != "cold" {
		r.Iters, r.Images = c.iters, c.iters*c.batch
	}
	if r.Seconds > 0 {
		r.ImagesPerS = float64(r.Images) / r.Seconds
		if c.mode != "cold" {
			r.GFLOPS = r.ImagesPerS * r.ExecFLOPs / 1e9 // the rate achieved on the work done
			r.RefGFLOPS = r.ImagesPerS * r.FLOPsPerImage / 1e9
		}
	}
	r.NSFW = verdicts(res)
	return emit(r)
}

// timeIters runs step c.warmup times untimed, then c.iters times; it returns the total timed seconds
// and each iteration's.
func timeIters(c config, step func() error) (float64, []float64, error) {
	for range c.warmup {
		if err := step(); err != nil {
			return 0, nil, err
		}
	}
	all := make([]float64, 0, c.iters)
	start := time.Now()
	for range c.iters {
		s := time.Now()
		if err := step(); err != nil {
			return 0, nil, err
		}
		all = append(all, time.Since(s).Seconds())
	}
	return time.Since(start).Seconds(), all, nil
}

func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := slices.Clone(x)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// sgemm times a size³ matrix product through gotch on one worker thread, as the model runs.
func sgemm(c config) error {
	n := c.size
	if n <= 0 {
		n = 2048
	}
	var dt gotch.DType
	switch c.dtype {
	case "float32":
		dt = gotch.Float
	case "bfloat16":
		dt = gotch.BFloat16
	case "float16":
		dt = gotch.Half
	default:
		return fmt.Errorf("--dtype %q", c.dtype)
	}
	w, err := gotchutil.NewWorker()
	if err != nil {
		return err
	}
	defer w.Close()
	r := newResult(c)
	r.Batch = 0
	err = w.Do(func() error {
		if c.threads > 0 {
			if err := gotchutil.SetNumThreads(c.threads); err != nil {
				return err
			}
		}
		r.Threads = gotchutil.NumThreads()
		var t gotchutil.Tape
		defer t.Release()
		rng := uint64(0x9e3779b97f4a7c15)
		data := make([]float32, n*n)
		fill := func() {
			for i := range data {
				rng ^= rng << 13
				rng ^= rng >> 7
				rng ^= rng << 17
				data[i] = float32(rng>>40)/float32(1<<24) - 0.5
			}
		}
		fill()
		a := t.ToDType(t.Float32(data, int64(n), int64(n)), dt)
		fill()
		b := t.ToDType(t.Float32(data, int64(n), int64(n)), dt)
		for range c.warmup {
			t.Free(t.Matmul(a, b))
		}
		all := make([]float64, 0, c.iters)
		start := time.Now()
		for range c.iters {
			s := time.Now()
			t.Free(t.Matmul(a, b))
			all = append(all, time.Since(s).Seconds())
		}
		r.Seconds = time.Since(start).Seconds()
		r.AllS = all
		return t.Err()
	})
	if err != nil {
		return err
	}
	r.Iters = c.iters
	flop := 2 * math.Pow(float64(n), 3)
	r.GFLOPS = flop / median(r.AllS) / 1e9 // the median product: a shared machine slows some down
	r.FLOPsPerImage = 0
	return emit(r)
}

// gemmShapes are the (in, out) sizes of ViT-L/14's linear layers: q/k/v or out_proj, the fused qkv,
// fc1 and fc2.
var gemmShapes = [][2]int64{{1024, 1024}, {1024, 3072}, {1024, 4096}, {4096, 1024}}

// gemm times the float32 products of the model's linear layers on rows = 257·batch tokens, as c.op
// computes them, on one worker thread (reference/bench_reference.py --mode gemm is its counterpart).
func gemm(c config) error {
	if c.dtype != "float32" {
		return fmt.Errorf("gemm: --dtype %q: only float32", c.dtype)
	}
	w, err := gotchutil.NewWorker()
	if err != nil {
		return err
	}
	defer w.Close()
	r := newResult(c)
	r.Op = c.op
	rows := int64(257 * c.batch)
	err = w.Do(func() error {
		if c.threads > 0 {
			if err := gotchutil.SetNumThreads(c.threads); err != nil {
				return err
			}
		}
		r.Threads = gotchutil.NumThreads()
		rng := uint64(0x9e3779b97f4a7c15)
		random := func(n int64) []float32 {
			d := make([]float32, n)
			for i := range d {
				rng ^= rng << 13
				rng ^= rng >> 7
				rng ^= rng << 17
				d[i] = float32(rng>>40)/float32(1<<24) - 0.5
			}
			return d
		}
		for _, sh := range gemmShapes {
			in, out := sh[0], sh[1]
			var t gotchutil.Tape
			x := t.Float32(random(rows*in), rows, in)
			wt := t.Float32(random(out*in), out, in) // [out, in], as stored
			b := t.Float32(random(out), out)
			var prod func() *ts.Tensor
			switch c.op {
			case "linear":
				prod = func() *ts.Tensor { return t.Linear(x, wt, b) }
			case "matmul_t":
				wT := t.Transpose(wt, 0, 1)
				prod = func() *ts.Tensor { return t.Matmul(x, wT) }
			case "matmul_kn":
				wKN := t.Contiguous(t.Transpose(wt, 0, 1))
				prod = func() *ts.Tensor { return t.Matmul(x, wKN) }
			default:
				t.Release()
				return fmt.Errorf("gemm: --op %q", c.op)
			}
			for range c.warmup {
				t.Free(prod())
			}
			all := make([]float64, 0, c.iters)
			for range c.iters {
				s := time.Now()
				t.Free(prod())
				all = append(all, time.Since(s).Seconds())
			}
			err := t.Err()
			t.Release()
			if err != nil {
				return err
			}
			r.GemmShapes = append(r.GemmShapes, fmt.Sprintf("%dx%d->%d", rows, in, out))
			r.GemmGFLOPS = append(r.GemmGFLOPS, 2*float64(rows*in*out)/median(all)/1e9)
			r.Seconds += median(all)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.Iters = c.iters
	return emit(r)
}

// writeImages writes c.count deterministic photo-like RGB PNGs (smooth gradients, overlapping
// shapes, fine texture) named img_00.png, img_01.png, … into c.images.
func writeImages(c config) error {
	size := c.size
	if size <= 0 {
		size = 512
	}
	if c.images == "" {
		return errors.New("--images is required")
	}
	if err := os.MkdirAll(c.images, 0o755); err != nil {
		return err
	}
	for k := range c.count {
		img := syntheticImage(size, size, uint64(k+1))
		path := filepath.Join(c.images, fmt.Sprintf("img_%02d.png", k))
		tmp := path + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			return err
		}
		if err := png.Encode(f, img); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	fmt.Printf("{\"mode\":\"images\",\"images\":%d,\"size\":%d,\"dir\":%q}\n", c.count, size, c.images)
	return nil
}

// syntheticImage is a deterministic w×h RGB picture for seed: a two-colour gradient, a dozen soft
// discs and a low-amplitude noise texture, so that it compresses and resizes like a photograph.
func syntheticImage(w, h int, seed uint64) *image.RGBA {
	rng := seed*0x9e3779b97f4a7c15 + 1
	next := func() float64 {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return float64(rng>>11) / float64(1<<53)
	}
	type disc struct{ x, y, r, cr, cg, cb, a float64 }
	var discs []disc
	for range 12 {
		discs = append(discs, disc{next() * float64(w), next() * float64(h), (0.05 + 0.25*next()) * float64(w),
			255 * next(), 255 * next(), 255 * next(), 0.3 + 0.6*next()})
	}
	c0 := [3]float64{255 * next(), 255 * next(), 255 * next()}
	c1 := [3]float64{255 * next(), 255 * next(), 255 * next()}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			u := (float64(x) + float64(y)) / float64(w+h)
			px := [3]float64{c0[0]*(1-u) + c1[0]*u, c0[1]*(1-u) + c1[1]*u, c0[2]*(1-u) + c1[2]*u}
			for _, d := range discs {
				dx, dy := float64(x)-d.x, float64(y)-d.y
				dist := math.Sqrt(dx*dx+dy*dy) / d.r
				if dist < 1 {
					a := d.a * (1 - dist*dist)
					px[0] = px[0]*(1-a) + d.cr*a
					px[1] = px[1]*(1-a) + d.cg*a
					px[2] = px[2]*(1-a) + d.cb*a
				}
			}
			n := (next() - 0.5) * 12
			img.SetRGBA(x, y, color.RGBA{clamp8(px[0] + n), clamp8(px[1] + n), clamp8(px[2] + n), 255})
		}
	}
	return img
}

func clamp8(v float64) uint8 {
	return uint8(math.Max(0, math.Min(255, math.Round(v))))
}
