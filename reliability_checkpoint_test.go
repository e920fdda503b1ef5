package safety

// Reliability tests, checkpoints: the tiny model (a testbuild.Model from the vision key spec), and
// every malformed checkpoint Load must refuse.
// docs/reliability.md lists every case with what happens.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"github.com/sdsafety/safety/internal/testbuild"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/clip"
)

// ---- checkpoints ---------------------------------------------------------------------------------

// encodeSafetensors is testbuild.Safetensors, failing the test on error.
func encodeSafetensors(t testing.TB, tensors []testbuild.Tensor, edit func(hdr map[string]map[string]any)) []byte {
	t.Helper()
	b, err := testbuild.Safetensors(tensors, edit)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tinyModel is a small, valid safety checker (hidden 8, one layer, 224×224 input with 32-pixel
// patches, projection 4, 17 + 3 concepts) with deterministic random weights: a testbuild.Model whose
// keys come from the vision tower's key spec (clip.VisionKeys) and the concept head. Tests change it
// and write it out with write.
type tinyModel struct {
	*testbuild.Model
	vision map[string]any // Config["vision_config"]
}

func newTinyModel(t testing.TB) *tinyModel {
	t.Helper()
	vision := map[string]any{
		"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1,
		"patch_size": 32, "image_size": 224, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
	}
	config := map[string]any{"model_type": "clip", "projection_dim": 4, "vision_config": vision}
	raw, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clip.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	shapes := clip.VisionKeys(cfg, clip.VisionPrefix)
	shapes[keyConceptEmbeds] = []int64{17, 4}
	shapes[keyConceptThresholds] = []int64{17}
	shapes[keySpecialEmbeds] = []int64{3, 4}
	shapes[keySpecialThresholds] = []int64{3}
	return &tinyModel{Model: testbuild.RandomModel(config, shapes, 1), vision: vision}
}

// find returns the tensor called name (a key without prefix is looked up under the vision prefix).
func (m *tinyModel) find(t testing.TB, name string) *testbuild.Tensor {
	t.Helper()
	x := m.Find(name)
	if x == nil {
		t.Fatalf("tiny model has no tensor %q", name)
	}
	return x
}

func (m *tinyModel) remove(t testing.TB, name string) {
	t.Helper()
	if !m.Remove(name) {
		t.Fatalf("tiny model has no tensor %q", name)
	}
}

// fill sets every element of a float32 tensor to v.
func (m *tinyModel) fill(t testing.TB, name string, v float32) {
	t.Helper()
	if !m.Fill(name, v) {
		t.Fatalf("tiny model has no tensor %q", name)
	}
}

// write writes config.json and model.safetensors into a new directory and returns it.
func (m *tinyModel) write(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := m.Write(dir, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeModelFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// torchArchive is testbuild.TorchArchive without storages, failing the test on error.
func torchArchive(t testing.TB, pkl []byte) []byte {
	t.Helper()
	b, err := testbuild.TorchArchive(pkl, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTinyModelLoads is the control for the malformed-checkpoint cases: the unmodified tiny model
// loads and checks an image.
func TestTinyModelLoads(t *testing.T) {
	c := mustLoad(t, newTinyModel(t).write(t), WithDevice(DeviceCPU))
	res, err := c.Check(context.Background(), []image.Image{solidImage(50, 40, color.NRGBA{1, 2, 3, 255})})
	if err != nil {
		t.Fatal(err)
	}
	requireFinite(t, res[0])
	if c.Info().Concepts != 17 || c.Info().SpecialConcept != 3 || c.Info().ProjectionDim != 4 {
		t.Errorf("info %+v", c.Info())
	}
}

// TestLoadMalformedCheckpoint writes a broken model directory per case and loads it: every case is
// an error wrapping ErrCheckpoint whose message says what is wrong, and no tensor is left behind.
func TestLoadMalformedCheckpoint(t *testing.T) {
	const fc1 = "encoder.layers.0.mlp.fc1.weight"
	hostile := func(name string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			data, err := os.ReadFile(filepath.Join("internal", "checkpoint", "testdata", name))
			if err != nil {
				t.Fatalf("hostile checkpoint (tracked by the repository): %v", err)
			}
			os.Remove(filepath.Join(dir, checkpoint.SafetensorsName))
			writeModelFile(t, filepath.Join(dir, checkpoint.TorchName), data)
		}
	}
	replace := func(name string, data []byte) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, checkpoint.SafetensorsName))
			writeModelFile(t, filepath.Join(dir, name), data)
		}
	}
	editHeader := func(edit func(hdr map[string]map[string]any)) func(t *testing.T, m *tinyModel, dir string) {
		return func(t *testing.T, m *tinyModel, dir string) {
			writeModelFile(t, filepath.Join(dir, checkpoint.SafetensorsName), encodeSafetensors(t, m.Tensors, edit))
		}
	}
	f16NaN := func(n int) []byte {
		b := make([]byte, 2*n)
		binary.LittleEndian.PutUint16(b[6:], 0x7e00) // element 3: NaN
		return b
	}
	for _, tc := range []struct {
		name  string
		model func(t *testing.T, m *tinyModel)             // changes the model before it is written
		files func(t *testing.T, dir string)               // changes the written directory
		raw   func(t *testing.T, m *tinyModel, dir string) // rewrites the weights from m
		want  []string                                     // in the message
	}{
		{name: "no config.json", files: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "config.json")) },
			want: []string{"config.json"}},
		{name: "config.json not JSON", files: func(t *testing.T, dir string) {
			writeModelFile(t, filepath.Join(dir, "config.json"), []byte("model_type: clip\n"))
		}, want: []string{"config.json", "invalid config"}},
		{name: "config.json truncated", files: func(t *testing.T, dir string) {
			writeModelFile(t, filepath.Join(dir, "config.json"), []byte(`{"model_type": "clip", "vision_config": {"hidden_`))
		}, want: []string{"invalid config"}},
		{name: "unknown activation", model: func(t *testing.T, m *tinyModel) { m.vision["hidden_act"] = "swish42" },
			want: []string{"hidden_act", "swish42"}},
		{name: "config does not match weights", model: func(t *testing.T, m *tinyModel) { m.Config["projection_dim"] = 5 },
			want: []string{"visual_projection.weight", "[4 8]", "[5 8]"}},
		{name: "preprocessor_config.json not JSON", files: func(t *testing.T, dir string) {
			writeModelFile(t, filepath.Join(dir, "preprocessor_config.json"), []byte("\x00\x01"))
		}, want: []string{"preprocessor_config.json"}},
		{name: "no weights file", files: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, checkpoint.SafetensorsName)) },
			want: []string{"no weights file"}},
		{name: "empty safetensors", files: replace(checkpoint.SafetensorsName, nil), want: []string{"too short"}},
		{name: "truncated safetensors", files: func(t *testing.T, dir string) {
			p := filepath.Join(dir, checkpoint.SafetensorsName)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()-100); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"out of range"}},
		{name: "safetensors cut inside the header", files: func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, checkpoint.SafetensorsName), 40); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"header length"}},
		{name: "header length larger than the file", files: func(t *testing.T, dir string) {
			p := filepath.Join(dir, checkpoint.SafetensorsName)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			binary.LittleEndian.PutUint64(b, uint64(len(b))+1000)
			writeModelFile(t, p, b)
		}, want: []string{"header length", "exceeds"}},
		{name: "header length 2^63", files: func(t *testing.T, dir string) {
			p := filepath.Join(dir, checkpoint.SafetensorsName)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			binary.LittleEndian.PutUint64(b, 1<<63)
			writeModelFile(t, p, b)
		}, want: []string{"exceeds the limit"}},
		{name: "overlapping offsets", raw: editHeader(func(hdr map[string]map[string]any) {
			hdr[clip.VisionPrefix+"post_layernorm.bias"]["data_offsets"] = hdr[clip.VisionPrefix+"pre_layrnorm.bias"]["data_offsets"]
		}), want: []string{"overlap"}},
		{name: "unknown dtype", raw: editHeader(func(hdr map[string]map[string]any) {
			hdr[clip.VisionPrefix+"pre_layrnorm.bias"]["dtype"] = "F7"
		}), want: []string{`"F7"`, "pre_layrnorm.bias"}},
		{name: "integer weight", model: func(t *testing.T, m *tinyModel) { m.find(t, "pre_layrnorm.bias").DType = "I32" },
			want: []string{"pre_layrnorm.bias", "want a float type"}},
		{name: "missing key", model: func(t *testing.T, m *tinyModel) { m.remove(t, fc1) },
			want: []string{"missing tensor", fc1}},
		{name: "missing concept head", model: func(t *testing.T, m *tinyModel) { m.remove(t, keySpecialThresholds) },
			want: []string{"missing tensor", keySpecialThresholds}},
		{name: "extra key", model: func(t *testing.T, m *tinyModel) {
			m.Tensors = append(m.Tensors, testbuild.Tensor{Name: clip.VisionPrefix + "encoder.layers.7.mlp.fc1.weight", DType: "F32", Shape: []int64{1}, Data: testbuild.Float32LE([]float32{1})})
		}, want: []string{"unexpected tensor", "encoder.layers.7.mlp.fc1.weight"}},
		{name: "wrong shape", model: func(t *testing.T, m *tinyModel) { m.find(t, fc1).Shape = []int64{8, 16} },
			want: []string{fc1, "[8 16]", "[16 8]"}},
		{name: "wrong rank", model: func(t *testing.T, m *tinyModel) { m.find(t, fc1).Shape = []int64{128} },
			want: []string{fc1, "[128]", "[16 8]"}},
		{name: "NaN weight", model: func(t *testing.T, m *tinyModel) {
			x := m.find(t, fc1)
			binary.LittleEndian.PutUint32(x.Data[4*5:], math.Float32bits(float32(math.NaN())))
		}, want: []string{fc1, "element 5", "NaN"}},
		{name: "Inf weight", model: func(t *testing.T, m *tinyModel) {
			m.fill(t, "post_layernorm.weight", float32(math.Inf(-1)))
		}, want: []string{"post_layernorm.weight", "element 0", "-Inf"}},
		{name: "NaN float16 weight", model: func(t *testing.T, m *tinyModel) {
			x := m.find(t, "embeddings.class_embedding")
			x.DType, x.Data = "F16", f16NaN(8)
		}, want: []string{"embeddings.class_embedding", "element 3", "NaN"}},
		{name: "NaN concept threshold", model: func(t *testing.T, m *tinyModel) {
			m.fill(t, keyConceptThresholds, float32(math.NaN()))
		}, want: []string{keyConceptThresholds, "NaN"}},
		{name: ".bin that is not a zip", files: replace(checkpoint.TorchName, []byte("<html>404 Not Found</html>\n")),
			want: []string{"pytorch_model.bin", "not a zip"}},
		{name: "malformed pickle", files: replace(checkpoint.TorchName, torchArchive(t, []byte{0x80, 0x02, 0xfe, '.'})),
			want: []string{"pytorch_model.bin", "opcode"}},
		{name: "pickle without STOP", files: replace(checkpoint.TorchName, torchArchive(t, []byte{0x80, 0x02, '}'})),
			want: []string{"pytorch_model.bin", "STOP"}},
		{name: "hostile pickle: os.system", files: hostile("hostile_global.bin"), want: []string{"refused pickle", `"os.system"`}},
		{name: "hostile pickle: builtins.eval", files: hostile("hostile_stack_global.bin"), want: []string{"refused pickle", `"builtins.eval"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const marker = "/tmp/checkpoint-pwned" // what the hostile pickles would create
			os.Remove(marker)
			m := newTinyModel(t)
			if tc.model != nil {
				tc.model(t, m)
			}
			dir := m.write(t)
			if tc.raw != nil {
				tc.raw(t, m, dir)
			}
			if tc.files != nil {
				tc.files(t, dir)
			}
			wantLoadError(t, dir, tc.want, WithDevice(DeviceCPU))
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("a hostile pickle ran a command")
			}
		})
	}
}
