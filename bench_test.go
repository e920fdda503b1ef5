package safety

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/sdsafety/safety/internal/imageproc"
)

// Benchmarks of the library on the full-size ViT-L/14 checkpoint (bench-cache/fullsize, `make bench`
// creates it). Without it — in CI, or under -short — they fall back to the tracked tiny model
// (testdata/golden/models/tiny_quickgelu) so that `go test -run '^$' -bench . -benchtime=1x` still
// exercises every path; their results are then named model=tiny_quickgelu (e.g.
// BenchmarkForward/model=tiny_quickgelu/batch=8) and report no model-GFLOP/s, so that no tiny-model
// number passes for a real one. scripts/bench.sh compares with the Python reference; these are the
// in-process numbers.

// benchTarget is the model a benchmark times.
type benchTarget struct {
	dir  string
	full bool   // the full-size ViT-L/14 checkpoint
	name string // "" for the full-size checkpoint (the documented names), else "model=…/"
}

// benchModel returns the model to benchmark: the full-size one, or the tracked tiny model.
func benchModel(b *testing.B) benchTarget {
	b.Helper()
	if !testing.Short() {
		dir := fullSizeDir()
		if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
			return benchTarget{filepath.Join(dir, "model"), true, ""}
		}
	}
	needTracked(b, filepath.Join(testModelDir, "config.json"))
	b.Logf("full-size checkpoint absent (%s): timing the tiny model %s", fullSizeDir(), testModelDir)
	return benchTarget{testModelDir, false, "model=" + filepath.Base(testModelDir) + "/"}
}

// benchPNG encodes a deterministic photo-like w×h RGB image (gradient, soft discs, fine noise).
func benchPNG(b *testing.B, w, h int, seed uint64) []byte {
	b.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5afe))
	type disc struct{ x, y, r, a float64 }
	var discs []disc
	var cols [][3]float64
	for range 10 {
		discs = append(discs, disc{rng.Float64() * float64(w), rng.Float64() * float64(h),
			(0.05 + 0.25*rng.Float64()) * float64(w), 0.3 + 0.6*rng.Float64()})
		cols = append(cols, [3]float64{255 * rng.Float64(), 255 * rng.Float64(), 255 * rng.Float64()})
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			u := float64(x+y) / float64(w+h)
			px := [3]float64{40 + 160*u, 90 + 60*u, 200 - 120*u}
			for i, d := range discs {
				dx, dy := float64(x)-d.x, float64(y)-d.y
				if dist := math.Sqrt(dx*dx+dy*dy) / d.r; dist < 1 {
					a := d.a * (1 - dist*dist)
					for ch := range 3 {
						px[ch] = px[ch]*(1-a) + cols[i][ch]*a
					}
				}
			}
			n := (rng.Float64() - 0.5) * 12
			var c [3]uint8
			for ch := range 3 {
				c[ch] = uint8(math.Max(0, math.Min(255, math.Round(px[ch]+n))))
			}
			img.SetRGBA(x, y, color.RGBA{c[0], c[1], c[2], 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// benchPixels returns n deterministic preprocessed-looking inputs [n, 3, s, s] (normal(0, 1)).
func benchPixels(n, s int) []float32 {
	rng := rand.New(rand.NewPCG(20240, uint64(n)))
	p := make([]float32, n*3*s*s)
	for i := range p {
		p[i] = float32(rng.NormFloat64())
	}
	return p
}

func reportImagesPerSecond(b *testing.B, images int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(images)/s, "images/s")
	}
}

// BenchmarkLoad loads the full-size safetensors checkpoint (1.2 GB, float32) onto the CPU and closes
// it again; MB/s is the checkpoint's size over the load time.
func BenchmarkLoad(b *testing.B) {
	dir := filepath.Join(needFullSize(b), "model")
	st, err := os.Stat(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	for b.Loop() {
		c, err := Load(dir, WithDevice(DeviceCPU))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPreprocess512 decodes one 512×512 PNG and preprocesses it to [3, 224, 224] (Pillow-exact
// bicubic resize, centre crop, normalisation), as Checker.PreprocessEncoded does.
func BenchmarkPreprocess512(b *testing.B) {
	data := benchPNG(b, 512, 512, 1)
	cfg := imageproc.DefaultConfig()
	w, h, err := cfg.OutputSize(512, 512)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, 3*w*h)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		rgb, err := imageproc.Decode(data, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := cfg.Preprocess(rgb, dst); err != nil {
			b.Fatal(err)
		}
	}
	reportImagesPerSecond(b, b.N)
}

// BenchmarkForward times the model alone: CheckPixels on preprocessed pixels, float32 on the CPU with
// libtorch's default thread count. model-GFLOP/s is the rate on the work done (see modelFLOPs).
func BenchmarkForward(b *testing.B) {
	m := benchModel(b)
	c := mustLoad(b, m.dir, WithDevice(DeviceCPU), WithBatchSize(8))
	info := c.Info()
	flops := modelFLOPs(info)
	ctx := context.Background()
	for _, batch := range []int{1, 8} {
		b.Run(fmt.Sprintf("%sbatch=%d", m.name, batch), func(b *testing.B) {
			pix := benchPixels(batch, info.ImageSize)
			if _, err := c.CheckPixels(ctx, pix, batch); err != nil { // warm-up: first-call allocations
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := c.CheckPixels(ctx, pix, batch); err != nil {
					b.Fatal(err)
				}
			}
			reportImagesPerSecond(b, b.N*batch)
			if s := b.Elapsed().Seconds(); s > 0 && m.full {
				b.ReportMetric(float64(b.N*batch)*flops/s/1e9, "model-GFLOP/s")
			}
		})
	}
}

// BenchmarkCheckE2E times the library's Check end to end on a batch of 512×512 photo-like images
// (decoded from PNG once, before timing, as a caller holding image.Image values would): Check's
// conversion and preprocessing, the model and the scoring.
func BenchmarkCheckE2E(b *testing.B) {
	m := benchModel(b)
	c := mustLoad(b, m.dir, WithDevice(DeviceCPU), WithBatchSize(8))
	ctx := context.Background()
	for _, batch := range []int{8} {
		b.Run(fmt.Sprintf("%sbatch=%d", m.name, batch), func(b *testing.B) {
			imgs := make([]image.Image, batch)
			for i := range imgs {
				img, err := png.Decode(bytes.NewReader(benchPNG(b, 512, 512, uint64(i+1))))
				if err != nil {
					b.Fatal(err)
				}
				imgs[i] = img
			}
			step := func() {
				res, err := c.Check(ctx, imgs)
				if err != nil {
					b.Fatal(err)
				}
				if len(res) != batch {
					b.Fatalf("%d results for %d images", len(res), batch)
				}
			}
			step() // warm-up
			for b.Loop() {
				step()
			}
			reportImagesPerSecond(b, b.N*batch)
		})
	}
}

// modelFLOPs is the work of one image through the vision tower and projection as this module does
// it, counting a multiply-add as 2 FLOPs: the patch convolution; per layer the q, k, v and output
// projections (4·T·D²), the attention products (2·T²·D) and the MLP (2·T·D·I), except that the last
// layer computes only the class token's row past its keys and values; the projection (D·P).
// For ViT-L/14 at 224×224 (T = 257): 156.4 GFLOP (162.0 for all rows of the last layer, as the
// reference computes them).
func modelFLOPs(info Info) float64 {
	v := info.Vision
	d, i := float64(v.HiddenSize), float64(v.IntermediateSize)
	g := float64(v.ImageSize / v.PatchSize)
	n := g * g
	t := n + 1
	patch := n * d * float64(v.NumChannels*v.PatchSize*v.PatchSize)
	layer := 4*t*d*d + 2*t*t*d + 2*t*d*i
	layers := float64(v.NumHiddenLayers) * layer
	if v.NumHiddenLayers > 0 {
		layers += 2*t*d*d + 2*d*d + 2*t*d + 2*d*i - layer
	}
	return 2 * (patch + layers + d*float64(info.ProjectionDim))
}
