package safety

// Issue 13 ("reliability, round two"): degenerate configs and numbers, bounded memory, truncated
// checkpoints. Each test names the item it covers; docs/reliability.md lists them.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sugarme/gotch"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/testbuild"
)

// loadErr loads dir on the CPU and returns the error, closing a checker that loaded.
func loadErr(t *testing.T, dir string, opts ...Option) error {
	t.Helper()
	c, err := Load(dir, append([]Option{WithDevice(DeviceCPU)}, opts...)...)
	if err == nil {
		c.Close()
	}
	return err
}

// setVision sets a key of the tiny model's vision_config.
func (m *tinyModel) setVision(key string, v any) *tinyModel { m.vision[key] = v; return m }

// TestLoadBoundedConfig covers issue 13 item 2: sizes a config declares are bounded before any
// per-layer work, and the declared layer count is compared with the checkpoint's layers first.
func TestLoadBoundedConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(m *tinyModel)
		wants []string
	}{
		{"a million layers", func(m *tinyModel) { m.setVision("num_hidden_layers", 1_000_000) }, []string{"num_hidden_layers is 1000000"}},
		{"2^31-1 layers", func(m *tinyModel) { m.setVision("num_hidden_layers", math.MaxInt32) }, []string{"num_hidden_layers"}},
		{"3 layers declared, 1 in the checkpoint", func(m *tinyModel) { m.setVision("num_hidden_layers", 3) },
			[]string{"declares 3 encoder layers, the checkpoint holds 1"}},
		{"0 layers in the checkpoint", func(m *tinyModel) {
			var kept []testbuild.Tensor
			for _, x := range m.Tensors {
				if !strings.Contains(x.Name, "encoder.layers.") {
					kept = append(kept, x)
				}
			}
			m.Tensors = kept
		}, []string{"declares 1 encoder layers, the checkpoint holds 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTinyModel(t)
			tc.edit(m)
			start := time.Now()
			err := loadErr(t, m.write(t))
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("Load = %v, want ErrCheckpoint", err)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("refusing took %v", d)
			}
		})
	}
}

// TestDegenerateNumbersRefused covers issue 13 item 5: finite numbers that would make every verdict
// independent of the image are refused at Load, at AddConceptEmbedding or as ErrNonFinite, never
// reported as "safe".
func TestDegenerateNumbersRefused(t *testing.T) {
	img := []image.Image{solidImage(40, 30, color.NRGBA{200, 10, 10, 255}), pattern2(64, 48)}

	t.Run("load", func(t *testing.T) {
		f64 := func(v float64, n int) []byte {
			out := make([]byte, 0, 8*n)
			for range n {
				out = binary.LittleEndian.AppendUint64(out, math.Float64bits(v))
			}
			return out
		}
		for _, tc := range []struct {
			name string
			edit func(t *testing.T, m *tinyModel, dir string)
			want string
		}{
			{"zero concept embeddings", func(t *testing.T, m *tinyModel, _ string) { m.fill(t, keyConceptEmbeds, 0) }, "concept_embeds\" row 0"},
			{"subnormal special-care embeddings", func(t *testing.T, m *tinyModel, _ string) { m.fill(t, keySpecialEmbeds, 1e-40) }, "special_care_embeds\" row 0"},
			{"concept embeddings whose norm overflows float32", func(t *testing.T, m *tinyModel, _ string) { m.fill(t, keyConceptEmbeds, 3e38) }, "degenerate"},
			{"float64 weight that overflows float32", func(t *testing.T, m *tinyModel, _ string) {
				x := m.find(t, "post_layernorm.weight")
				x.DType, x.Data = "F64", f64(1e300, len(x.Data)/4)
			}, "overflows the compute dtype"},
			{"layer_norm_eps Inf in float32", func(t *testing.T, m *tinyModel, _ string) { m.setVision("layer_norm_eps", 1e39) }, "layer_norm_eps"},
			{"layer_norm_eps 1e30", func(t *testing.T, m *tinyModel, _ string) { m.setVision("layer_norm_eps", 1e30) }, "layer_norm_eps"},
			{"rescale_factor 0", processorConfig(`{"rescale_factor": 0}`), "erased"},
			{"size 1", processorConfig(`{"size": 1}`), "quarter"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m := newTinyModel(t)
				tc.edit(t, m, "")
				dir := m.write(t)
				tc.edit(t, m, dir) // the processor-config cases write into the model directory
				err := loadErr(t, dir)
				if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Load = %v, want ErrCheckpoint containing %q", err, tc.want)
				}
			})
		}
	})

	t.Run("check", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			v    float32
		}{
			{"all-zero projection", 0},
			{"subnormal projection", 1e-40},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m := newTinyModel(t)
				m.fill(t, "visual_projection.weight", tc.v)
				c := mustLoad(t, m.write(t), WithDevice(DeviceCPU))
				res, err := c.Check(context.Background(), img)
				if !errors.Is(err, ErrNonFinite) || res != nil {
					t.Fatalf("Check = %s, %v; want ErrNonFinite and no results", summarizeResults(res), err)
				}
			})
		}
	})

	t.Run("score", func(t *testing.T) {
		c := &Concepts{Embeds: [][]float32{{1, 0, 0, 0}}, Thresholds: []float32{0.5},
			SpecialEmbeds: [][]float32{{0, 1, 0, 0}}, SpecialThresholds: []float32{0.5}}
		for _, tc := range []struct {
			name string
			e    []float32
		}{
			{"norm overflows float32", []float32{2e38, 2e38, 2e38, 2e38}},
			{"zero", []float32{0, 0, 0, 0}},
			{"subnormal", []float32{1e-40, 1e-40, 0, 0}},
			{"below torch's 1e-12 clamp", []float32{1e-13, 0, 0, 0}},
		} {
			var r Result
			if err := c.score(tc.e, 0, &r); !errors.Is(err, ErrNonFinite) {
				t.Errorf("score(%s) = %v (cos %v), want ErrNonFinite", tc.name, err, r.CosDist)
			}
		}
		// The control: a large but representable embedding is scored, and its cosine is exact.
		var r Result
		if err := c.score([]float32{1e38, 0, 0, 0}, 0, &r); err != nil || r.CosDist[0] != 1 || !r.NSFW {
			t.Errorf("score(1e38 e0) = %v, cos %v, NSFW %v; want cos 1 and a hit", err, r.CosDist, r.NSFW)
		}
	})

	t.Run("custom concepts", func(t *testing.T) {
		c := mustLoad(t, newTinyModel(t).write(t), WithDevice(DeviceCPU))
		for _, tc := range []struct {
			name string
			e    []float32
		}{
			{"zero", []float32{0, 0, 0, 0}},
			{"subnormal", []float32{1e-40, 0, 1e-40, 0}},
			{"norm overflows float32", []float32{3e38, 3e38, 0, 0}},
		} {
			if err := c.AddConceptEmbedding(tc.name, tc.e, 0.2); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("AddConceptEmbedding(%s) = %v, want ErrInvalidInput", tc.name, err)
			}
		}
		if err := c.AddConceptEmbedding("ok", []float32{1e-3, 2e-3, 0, 0}, 0.2); err != nil {
			t.Errorf("AddConceptEmbedding(small but sound) = %v", err)
		}
		if got := len(c.CustomConcepts()); got != 1 {
			t.Errorf("%d custom concepts, want 1", got)
		}
	})
}

// processorConfig returns an edit for TestDegenerateNumbersRefused that writes a
// preprocessor_config.json into the model directory (called again once the directory exists).
func processorConfig(json string) func(t *testing.T, _ *tinyModel, dir string) {
	return func(t *testing.T, _ *tinyModel, dir string) {
		if dir != "" {
			writeModelFile(t, filepath.Join(dir, "preprocessor_config.json"), []byte(json))
		}
	}
}

// pattern2 is a w×h image with gradients, distinct from a solid image.
func pattern2(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.Set(x, y, color.NRGBA{uint8(4 * x), uint8(5 * y), uint8(x * y), 255})
		}
	}
	return m
}

// TestCheckPixelsHugeN covers issue 13 item 7: an n whose n·3·S·S overflows is refused, not a
// makeslice panic.
func TestCheckPixelsHugeN(t *testing.T) {
	c := mustLoad(t, newTinyModel(t).write(t), WithDevice(DeviceCPU))
	per := 3 * c.Info().ImageSize * c.Info().ImageSize
	pix := make([]float32, per)
	// 1 + 2^54: n·per wraps around to exactly per (per = 3·224·224 = 147·2^10), so the length check
	// alone passes and make([]Result, 0, n) panicked.
	for _, n := range []int{1<<54 + 1, math.MaxInt, math.MaxInt/per + 1, 1 << 62, -1, 2} {
		res, err := func() (res []Result, err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return c.CheckPixels(context.Background(), pix, n)
		}()
		if !errors.Is(err, ErrInvalidInput) || res != nil {
			t.Errorf("CheckPixels(n=%d) = %d results, %v; want ErrInvalidInput", n, len(res), err)
		}
	}
	if res, err := c.CheckPixels(context.Background(), pix, 1); err != nil || len(res) != 1 {
		t.Errorf("CheckPixels(n=1) = %d results, %v", len(res), err)
	}
}

// peakHeap runs fn while sampling the Go heap every half millisecond and returns the largest growth
// of HeapAlloc above its value before fn.
func peakHeap(fn func()) uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := m.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var s runtime.MemStats
		for {
			runtime.ReadMemStats(&s)
			if s.HeapAlloc > base && s.HeapAlloc-base > peak.Load() {
				peak.Store(s.HeapAlloc - base)
			}
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Microsecond):
			}
		}
	}()
	fn()
	close(stop)
	<-done
	return peak.Load()
}

// TestCheckStreamsAndBounds covers issue 13 item 8 for Check: it converts and preprocesses one batch
// at a time (memory does not grow with the number of images), and it applies WithMaxPixels to
// image.Image inputs.
func TestCheckStreamsAndBounds(t *testing.T) {
	dir := newTinyModel(t).write(t)
	c := mustLoad(t, dir, WithDevice(DeviceCPU), WithBatchSize(2), WithMaxPixels(1000))
	const n = 300 // 300 preprocessed images hold 181 MB; a batch of 2 holds 1.2 MB
	images := make([]image.Image, n)
	for i := range images {
		images[i] = solidImage(1, 1, color.NRGBA{uint8(i), uint8(3 * i), 7, 255})
	}
	var res []Result
	var err error
	peak := peakHeap(func() { res, err = c.Check(context.Background(), images) })
	if err != nil || len(res) != n {
		t.Fatalf("Check(%d 1x1 images) = %d results, %v", n, len(res), err)
	}
	t.Logf("Check of %d 1x1 images, batch 2: peak heap growth %.1f MiB", n, float64(peak)/(1<<20))
	if peak > 48<<20 {
		t.Errorf("peak heap growth %d bytes for %d 1x1 images in batches of 2; want < 48 MiB (streamed)", peak, n)
	}
	// Streaming gives the same answers as one image at a time.
	for _, i := range []int{0, 1, 150, n - 1} {
		one, err := c.Check(context.Background(), images[i:i+1])
		if err != nil || fmt.Sprint(one[0].ConceptScores) != fmt.Sprint(res[i].ConceptScores) {
			t.Errorf("image %d: alone %v, %v; in the stream %v", i, one, err, res[i].ConceptScores)
		}
	}

	// WithMaxPixels(1000) applies to image.Image inputs; the error names the index (across batches).
	big := append(append([]image.Image{}, images[:3]...), solidImage(40, 30, color.Black))
	res, err = c.Check(context.Background(), big)
	if !errors.Is(err, ErrImageTooLarge) || !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "image 3") || res != nil {
		t.Errorf("Check with a 1200-pixel image = %v, %v; want ErrImageTooLarge naming image 3", res, err)
	}
	if _, err := c.Preprocess(solidImage(40, 30, color.Black)); !errors.Is(err, ErrImageTooLarge) {
		t.Errorf("Preprocess(1200 pixels) = %v, want ErrImageTooLarge", err)
	}
	if _, err := c.Check(context.Background(), []image.Image{solidImage(40, 25, color.Black)}); err != nil {
		t.Errorf("Check(1000 pixels) = %v, want it checked", err)
	}
}

// peakRSS resets the process's peak resident set (Linux: /proc/self/clear_refs) and returns a function
// that reports the peak since then, in bytes.
func peakRSS(t *testing.T) func() int64 {
	t.Helper()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak RSS: %v", err)
	}
	return func() int64 {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return kb << 10
			}
		}
		t.Fatal("no VmHWM in /proc/self/status")
		return 0
	}
}

// TestCheckTensorExtremeAspect covers issue 13 item 8 for CheckTensor's fast path: a 1×1000 image
// (resized to 224×224000 by the shortest-edge rule) takes the exact path instead of a device resize
// of the whole resized image, and gives the exact path's answer.
func TestCheckTensorExtremeAspect(t *testing.T) {
	c := mustLoad(t, newTinyModel(t).write(t), WithDevice(DeviceCPU))
	const w = 1000
	data := make([]float32, 3*w)
	for i := range data {
		data[i] = float32(i%97) / 97
	}
	x := newTestTensor(t, c, data, gotch.Float, 1, 3, 1, w)
	settleMemory()
	before := rssBytes(t)
	peak := peakRSS(t)
	fast, err := c.CheckTensor(context.Background(), x, &TensorOptions{Fast: true, ZeroToOne: true})
	grown := peak() - before
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fast path on [1,3,1,%d]: peak RSS %.1f MiB above the start", w, float64(grown)/(1<<20))
	if grown > 256<<20 {
		t.Errorf("fast path on a [1,3,1,%d] tensor raised the peak RSS by %d bytes, want < 256 MiB", w, grown)
	}
	exact, err := c.CheckTensor(context.Background(), x, &TensorOptions{ZeroToOne: true})
	if err != nil {
		t.Fatal(err)
	}
	dropOnCleanup(t, c, fast.Images)
	dropOnCleanup(t, c, exact.Images)
	if fmt.Sprint(fast.Results[0].ConceptScores) != fmt.Sprint(exact.Results[0].ConceptScores) {
		t.Errorf("fast %v, exact %v: want the exact path's answer", fast.Results[0].ConceptScores, exact.Results[0].ConceptScores)
	}
}

// TestTruncatedCheckpointIsAnError covers issue 13 item 6: Load on a file truncated to its header
// fails cleanly (the sizes no longer match, which the parser sees before mapping any data). The
// truncation after mapping is internal/clip's TestCopyCheckedTruncated.
func TestTruncatedCheckpointIsAnError(t *testing.T) {
	dir := newTinyModel(t).write(t)
	if err := os.Truncate(filepath.Join(dir, checkpoint.SafetensorsName), 4096); err != nil { // keep the header
		t.Fatal(err)
	}
	if err := loadErr(t, dir); !errors.Is(err, ErrCheckpoint) {
		t.Errorf("Load of the truncated file = %v, want ErrCheckpoint", err)
	}
}

// TestSelfTest covers the optional load-time self-test of issue 13 item 5: a model that gives every
// image the same embedding (a zeroed post_layernorm weight: finite, with a sound norm) loads without
// it and is refused with it; the unbroken model passes it. It also logs the self-test's cost.
func TestSelfTest(t *testing.T) {
	m := newTinyModel(t)
	good := m.write(t)
	var with, without time.Duration
	for range 3 { // the best of three, each way
		start := time.Now()
		if err := loadErr(t, good); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		if without == 0 || d < without {
			without = d
		}
		start = time.Now()
		if err := loadErr(t, good, WithSelfTest(true)); err != nil {
			t.Fatalf("Load(tiny model, self-test) = %v", err)
		}
		if d := time.Since(start); with == 0 || d < with {
			with = d
		}
	}
	t.Logf("Load of the tiny model (best of 3): %v with the self-test, %v without", with, without)

	m.fill(t, "post_layernorm.weight", 0)
	m.fill(t, "post_layernorm.bias", 0.5) // the pooled output is this bias whatever the image
	flat := m.write(t)
	c := mustLoad(t, flat, WithDevice(DeviceCPU))
	res, err := c.Check(context.Background(), []image.Image{solidImage(8, 8, color.White), pattern2(64, 48)})
	if err != nil || fmt.Sprint(res[0].ImageEmbeds) != fmt.Sprint(res[1].ImageEmbeds) {
		t.Fatalf("the broken model should give both images one embedding: %v, %v", summarizeResults(res), err)
	}
	if err := loadErr(t, flat, WithSelfTest(true)); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "same embedding") {
		t.Fatalf("Load(zeroed post_layernorm, self-test) = %v, want ErrCheckpoint naming the same embedding", err)
	}
}
