package safety

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/gotchutil"
	"github.com/sdsafety/safety/internal/testbuild"
)

// Zero-copy weights (issue 17, docs/zero-copy.md): on the CPU, float32 safetensors weights computed in
// float32 are views of the mapped file unless WithMappedWeights(false).

// TestMappedEqualsCopied: on every golden vision model and the text golden, the mapped and the copied
// weights give bit-identical outputs, and Info counts the weights as mapped or copied.
func TestMappedEqualsCopied(t *testing.T) {
	files := goldenImages(t)
	var pix []float32
	{
		c := mustLoad(t, testModelDir, WithDevice(DeviceCPU))
		for _, f := range files {
			p, err := c.PreprocessFile(f)
			if err != nil {
				t.Fatal(err)
			}
			pix = append(pix, p...)
		}
	}
	for _, dir := range goldenModels(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			var out [2][]Result
			for i, mapped := range []bool{true, false} {
				c := mustLoad(t, dir, WithDevice(DeviceCPU), WithMappedWeights(mapped), WithBatchSize(2))
				info := c.Info()
				if mapped && (info.MappedBytes == 0 || info.CopiedBytes != 0) || !mapped && (info.MappedBytes != 0 || info.CopiedBytes == 0) {
					t.Errorf("mapped %v: Info MappedBytes %d, CopiedBytes %d", mapped, info.MappedBytes, info.CopiedBytes)
				}
				s := info.ImageSize
				p := pix
				if s != 224 { // a golden model of another input size: feed its own preprocessing
					p = nil
					for _, f := range files {
						q, err := c.PreprocessFile(f)
						if err != nil {
							t.Fatal(err)
						}
						p = append(p, q...)
					}
				}
				r, err := c.CheckPixels(context.Background(), p, len(files))
				if err != nil {
					t.Fatal(err)
				}
				out[i] = r
			}
			for k := range files {
				a, b := out[0][k], out[1][k]
				if !slices.Equal(a.ImageEmbeds, b.ImageEmbeds) || !slices.Equal(a.PooledOutput, b.PooledOutput) ||
					!slices.Equal(a.ConceptScores, b.ConceptScores) || a.NSFW != b.NSFW {
					t.Errorf("%s: mapped and copied weights differ", filepath.Base(files[k]))
				}
			}
		})
	}
	t.Run("text", func(t *testing.T) {
		// The text golden's text tower is stored in float16 (copied when computing in float32); its
		// float32 copy holds exactly the same values, so all three loads must agree bit for bit.
		texts := []string{"a photo of a cat", "", "an astronaut riding a horse on the moon"}
		f32 := float32TextGolden(t)
		var out [3][][]float32
		for i, tc := range []struct {
			dir    string
			mapped bool
		}{{f32, true}, {f32, false}, {filepath.Join(textGoldenDir, "clip"), true}} {
			e := mustLoadText(t, tc.dir, WithDevice(DeviceCPU), WithMappedWeights(tc.mapped))
			mapped := tc.mapped && tc.dir == f32
			info := e.Info()
			if mapped && (info.MappedBytes == 0 || info.CopiedBytes != 0) || !mapped && (info.MappedBytes != 0 || info.CopiedBytes == 0) {
				t.Errorf("mapped %v: TextInfo MappedBytes %d, CopiedBytes %d", mapped, info.MappedBytes, info.CopiedBytes)
			}
			r, err := e.Embed(context.Background(), texts)
			if err != nil {
				t.Fatal(err)
			}
			out[i] = r
		}
		for k := range texts {
			if !slices.Equal(out[0][k], out[1][k]) || !slices.Equal(out[0][k], out[2][k]) {
				t.Errorf("text %q: mapped and copied weights differ", texts[k])
			}
		}
	})
}

// float32TextGolden writes the text golden (testdata/golden/text/clip) with every float tensor in
// float32 into a new directory (tokenizer files linked) and returns it.
func float32TextGolden(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join(textGoldenDir, "clip"))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoint.Open(filepath.Join(src, checkpoint.SafetensorsName))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	var tensors []testbuild.Tensor
	for _, name := range ck.Names() {
		tn, err := ck.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, testbuild.Tensor{Name: name, DType: "F32", Shape: tn.Shape, Data: testbuild.Float32LE(v)})
	}
	b, err := testbuild.Safetensors(tensors, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeModelFile(t, filepath.Join(dir, checkpoint.SafetensorsName), b)
	for _, f := range []string{"config.json", "vocab.json", "merges.txt", "tokenizer_config.json"} {
		if err := os.Symlink(filepath.Join(src, f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestMappedBytes: what is mapped for each weights file and option. Only a file whose dtype is the
// compute dtype, in safetensors, with the option on, is mapped.
func TestMappedBytes(t *testing.T) {
	tests := []struct {
		name    string
		weights string
		opts    []Option
		mapped  bool
	}{
		{"float32 safetensors", "model.safetensors", nil, true},
		{"option off", "model.safetensors", []Option{WithMappedWeights(false)}, false},
		{"float16 file in float32", "model.fp16.safetensors", nil, false},
		{"torch zip", "pytorch_model.bin", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			needTracked(t, filepath.Join(testModelDir, tc.weights))
			dir := modelWith(t, testModelDir, tc.weights)
			c := mustLoad(t, dir, append([]Option{WithDevice(DeviceCPU)}, tc.opts...)...)
			info := c.Info()
			if filepath.Base(info.WeightsFile) != tc.weights {
				t.Fatalf("loaded %s, want %s", info.WeightsFile, tc.weights)
			}
			if got := info.MappedBytes > 0; got != tc.mapped || info.MappedBytes+info.CopiedBytes == 0 {
				t.Errorf("MappedBytes %d, CopiedBytes %d; want mapped %v", info.MappedBytes, info.CopiedBytes, tc.mapped)
			}
			if tc.mapped && info.CopiedBytes != 0 {
				t.Errorf("CopiedBytes %d, want 0: every weight of a float32 file can be viewed", info.CopiedBytes)
			}
		})
	}
}

// copyModel copies src's config files and its model.safetensors into a new directory (a file of
// its own, so that its mapping can be told apart in /proc/self/maps) and returns the directory.
func copyModel(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config.json", "preprocessor_config.json", checkpoint.SafetensorsName} {
		in, err := os.Open(filepath.Join(src, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dir, f))
		if err == nil {
			_, err = io.Copy(out, in)
			err = errors.Join(err, out.Close())
		}
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mappedIn reports whether path is mapped into this process (/proc/self/maps).
func mappedIn(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), path)
}

// TestMappingReleasedAtClose (Linux): a mapped model keeps its file mapped while open and unmaps it
// at Close, after its tensors; a copied model unmaps it at the end of Load; a failed Load unmaps it
// too. Checker and TextEncoder alike.
func TestMappingReleasedAtClose(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/maps")
	}
	vision := func(dir string, opts ...Option) (io.Closer, error) { return Load(dir, opts...) }
	text := func(dir string, opts ...Option) (io.Closer, error) { return LoadTextEncoder(dir, opts...) }
	textDir := float32TextGolden(t)
	tests := []struct {
		name   string
		load   func(dir string, opts ...Option) (io.Closer, error)
		src    string
		mapped bool
		extra  []string // files the copy needs besides the model's
	}{
		{"checker mapped", vision, testModelDir, true, nil},
		{"checker copied", vision, testModelDir, false, nil},
		{"text encoder mapped", text, textDir, true, []string{"vocab.json", "merges.txt", "tokenizer_config.json"}},
		{"text encoder copied", text, textDir, false, []string{"vocab.json", "merges.txt", "tokenizer_config.json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyModel(t, tc.src)
			for _, f := range tc.extra {
				if err := os.Symlink(filepath.Join(tc.src, f), filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, checkpoint.SafetensorsName)
			before := gotchutil.LiveTensors()
			m, err := tc.load(dir, WithDevice(DeviceCPU), WithMappedWeights(tc.mapped))
			if err != nil {
				t.Fatal(err)
			}
			if got := mappedIn(t, path); got != tc.mapped {
				t.Errorf("after Load: file mapped %v, want %v", got, tc.mapped)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if mappedIn(t, path) {
				t.Error("after Close: the file is still mapped")
			}
			if got := gotchutil.LiveTensors(); got != before {
				t.Errorf("after Close: %d tensors alive, want %d", got, before)
			}
		})
	}
}

// wantLoadError loads dir with opts and checks that it fails with an ErrCheckpoint error containing
// every string of want, leaving no tensor alive.
func wantLoadError(t *testing.T, dir string, want []string, opts ...Option) {
	t.Helper()
	before := gotchutil.LiveTensors()
	c, err := Load(dir, opts...)
	if err == nil {
		c.Close()
		t.Fatal("loaded")
	}
	if !errors.Is(err, ErrCheckpoint) {
		t.Errorf("error %q does not wrap ErrCheckpoint", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if got := gotchutil.LiveTensors(); got != before {
		t.Errorf("failed Load left %d tensors alive", got-before)
	}
}

// TestMappedNonFinite: a NaN or Inf weight is an ErrCheckpoint error naming it on the mapped path as
// on the copy path, in a per-layer weight and in a single tensor; the failed Load leaves no tensor
// alive and the file unmapped.
func TestMappedNonFinite(t *testing.T) {
	const fc1 = "encoder.layers.0.mlp.fc1.weight"
	tests := []struct {
		name   string
		tensor string
		value  float32
		index  int
		want   []string
	}{
		{"NaN in a layer weight", fc1, float32(math.NaN()), 5, []string{fc1, "element 5", "NaN"}},
		{"Inf in a single tensor", "post_layernorm.weight", float32(math.Inf(1)), 2, []string{"post_layernorm.weight", "element 2", "+Inf"}},
	}
	for _, tc := range tests {
		for _, mapped := range []bool{true, false} {
			t.Run(tc.name+map[bool]string{true: ", mapped", false: ", copied"}[mapped], func(t *testing.T) {
				m := newTinyModel(t)
				x := m.find(t, tc.tensor)
				binary.LittleEndian.PutUint32(x.Data[4*tc.index:], math.Float32bits(tc.value))
				dir := m.write(t)
				wantLoadError(t, dir, tc.want, WithDevice(DeviceCPU), WithMappedWeights(mapped))
				if runtime.GOOS == "linux" && mappedIn(t, filepath.Join(dir, checkpoint.SafetensorsName)) {
					t.Error("failed Load left the file mapped")
				}
			})
		}
	}
}

// TestFullSizeMappedTiming loads the full-size checkpoint twice, mapped and copied, checks that both
// give the same results bit for bit, and logs forward times alternated in one process (batch 1 six
// rounds, batch 8 three; docs/zero-copy.md). A measurement besides the check: it runs only with
// SAFETY_MAPPED_TIMING=1 and the full-size model.
func TestFullSizeMappedTiming(t *testing.T) {
	if os.Getenv("SAFETY_MAPPED_TIMING") != "1" {
		t.Skip("a timing: set SAFETY_MAPPED_TIMING=1")
	}
	dir := filepath.Join(needFullSize(t), "model")
	mapped := mustLoad(t, dir, WithDevice(DeviceCPU), WithBatchSize(8))
	copied := mustLoad(t, dir, WithDevice(DeviceCPU), WithBatchSize(8), WithMappedWeights(false))
	if mapped.Info().MappedBytes == 0 || copied.Info().MappedBytes != 0 {
		t.Fatalf("MappedBytes %d and %d, want > 0 and 0", mapped.Info().MappedBytes, copied.Info().MappedBytes)
	}
	ctx := context.Background()
	for _, tc := range []struct{ batch, rounds int }{{1, 6}, {8, 3}} {
		pix := benchPixels(tc.batch, 224)
		a, err1 := mapped.CheckPixels(ctx, pix, tc.batch) // also the warm-up
		b, err2 := copied.CheckPixels(ctx, pix, tc.batch)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		for i := range a {
			if !slices.Equal(a[i].ImageEmbeds, b[i].ImageEmbeds) {
				t.Errorf("batch %d image %d: mapped and copied embeddings differ", tc.batch, i)
			}
		}
		for r := range tc.rounds {
			for _, v := range []struct {
				name string
				c    *Checker
			}{{"mapped", mapped}, {"copied", copied}} {
				start := time.Now()
				if _, err := v.c.CheckPixels(ctx, pix, tc.batch); err != nil {
					t.Fatal(err)
				}
				t.Logf("batch %d round %d %s: %.3f s", tc.batch, r, v.name, time.Since(start).Seconds())
			}
		}
	}
}
