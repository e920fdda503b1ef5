package checkpoint

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// fixtureDir is a tiny real safety-checker checkpoint the repository tracks (written by
// reference/make_golden.py with transformers: the hub key layout with position_ids, in safetensors,
// torch zip and fp16 safetensors).
const fixtureDir = "../../testdata/golden/models/tiny_quickgelu"

// fixture returns the path of one of its files; a missing one fails the test (a broken checkout).
func fixture(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(fixtureDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture %s is tracked by the repository but missing: %v", p, err)
	}
	return p
}

func openT(t *testing.T, path string) Checkpoint {
	t.Helper()
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func TestFixtureFormatsAgree(t *testing.T) {
	st := openT(t, fixture(t, "model.safetensors"))
	pt := openT(t, fixture(t, "pytorch_model.bin"))
	h16 := openT(t, fixture(t, "model.fp16.safetensors"))
	if _, ok := st.(*File); !ok {
		t.Fatalf("model.safetensors opened as %T", st)
	}
	if _, ok := pt.(*TorchFile); !ok {
		t.Fatalf("pytorch_model.bin opened as %T", pt)
	}
	names := st.Names()
	if len(names) < 40 || !slices.IsSorted(names) {
		t.Fatalf("names: %d, sorted %v", len(names), slices.IsSorted(names))
	}
	if !slices.Equal(names, pt.Names()) || !slices.Equal(names, h16.Names()) {
		t.Fatalf("name sets differ:\nsafetensors %v\ntorch %v\nfp16 %v", names, pt.Names(), h16.Names())
	}
	for _, name := range names {
		a, err := st.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := pt.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		h, err := h16.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) || !slices.Equal(a.Shape, h.Shape) {
			t.Fatalf("%s: safetensors %s%v, torch %s%v, fp16 %s%v", name, a.DType, a.Shape, b.DType, b.Shape, h.DType, h.Shape)
		}
		if info, ok := pt.Info(name); !ok || info.Data != nil || info.DType != b.DType || !slices.Equal(info.Shape, b.Shape) {
			t.Fatalf("%s: Info %+v", name, info)
		}
		if a.DType == I64 {
			if h.DType != I64 {
				t.Fatalf("%s: fp16 file has %s", name, h.DType)
			}
			ai, _ := a.Int64()
			bi, _ := b.Int64()
			hi, _ := h.Int64()
			if !slices.Equal(ai, bi) || !slices.Equal(ai, hi) {
				t.Fatalf("%s: int values differ", name)
			}
			continue
		}
		if a.DType != F32 || h.DType != F16 {
			t.Fatalf("%s: dtypes %s / %s", name, a.DType, h.DType)
		}
		if string(a.Data) != string(b.Data) {
			t.Fatalf("%s: safetensors and torch bytes differ", name)
		}
		av, hv := mustFloat32(t, a), mustFloat32(t, h)
		for i := range av {
			// Round to nearest binary16: relative error <= 2^-11 for normals, absolute <= 2^-25 below.
			if d := math.Abs(float64(av[i] - hv[i])); d > math.Abs(float64(av[i]))/2048+1.0/(1<<25) {
				t.Fatalf("%s[%d]: fp32 %v vs fp16 %v", name, i, av[i], hv[i])
			}
		}
	}
}

func TestFixturePositionIDs(t *testing.T) {
	const name = "vision_model.vision_model.embeddings.position_ids"
	for _, file := range []string{"model.safetensors", "pytorch_model.bin"} {
		c := openT(t, fixture(t, file))
		tn, err := c.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if tn.DType != I64 || !slices.Equal(tn.Shape, []int64{1, 257}) {
			t.Fatalf("%s: %s %v", file, tn.DType, tn.Shape)
		}
		ids, err := tn.Int64()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range ids {
			if v != int64(i) {
				t.Fatalf("%s: position_ids[%d] = %d", file, i, v)
			}
		}
	}
}

func TestFixtureTorchViews(t *testing.T) {
	f, err := OpenTorch(fixture(t, "pytorch_model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, ok := f.View("vision_model.vision_model.embeddings.patch_embedding.weight")
	if !ok || !v.Contiguous || v.DType != F32 || !slices.Equal(v.Stride, []int64{588, 196, 14, 1}) || v.Offset != 0 {
		t.Fatalf("view %+v", v)
	}
	tn, err := f.Tensor("vision_model.vision_model.embeddings.patch_embedding.weight")
	if err != nil {
		t.Fatal(err)
	}
	if len(tn.Data) != 32*3*14*14*4 {
		t.Fatalf("data %d bytes", len(tn.Data))
	}
}

// TestFixtureFind picks the fixture's weights files, whose shapes agree with its config.json
// (hidden size 32, projection 24, 224/14 = 16² patches; internal/clip's TestFixtureConfig reads it).
func TestFixtureFind(t *testing.T) {
	fixture(t, "config.json")
	p, err := FindWeights(fixtureDir, false)
	if err != nil || filepath.Base(p) != "model.safetensors" {
		t.Fatalf("FindWeights: %q %v", p, err)
	}
	p, err = FindWeights(fixtureDir, true)
	if err != nil || filepath.Base(p) != "model.fp16.safetensors" {
		t.Fatalf("FindWeights fp16: %q %v", p, err)
	}
	c := openT(t, fixture(t, "model.safetensors"))
	info, _ := c.Info("visual_projection.weight")
	if !slices.Equal(info.Shape, []int64{24, 32}) {
		t.Fatalf("visual_projection.weight %v", info.Shape)
	}
	info, _ = c.Info("vision_model.vision_model.embeddings.position_embedding.weight")
	if info.Shape[0] != 16*16+1 {
		t.Fatalf("position_embedding %v vs %d patches", info.Shape, 16*16)
	}
}
