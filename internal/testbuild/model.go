package testbuild

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Model is a model directory to write: config.json and one model.safetensors. Tests build one (for
// example with [RandomModel]), change its config or tensors and write it out with [Model.Write].
type Model struct {
	Config  map[string]any
	Tensors []Tensor
}

// RandomModel returns a model with config and one float32 tensor per entry of shapes (name → shape),
// in sorted name order, with deterministic values from seed: 0.3 for concept thresholds (names ending
// in "_weights"), 1 for LayerNorm weights, 0 for biases, normal(0, 0.2) otherwise. The caller lists the
// shapes (from the model's own key spec), so a builder cannot drift from the model it feeds.
func RandomModel(config map[string]any, shapes map[string][]int64, seed uint64) *Model {
	m := &Model{Config: config}
	rng := rand.New(rand.NewPCG(seed, seed+1))
	names := make([]string, 0, len(shapes))
	for name := range shapes {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		shape := shapes[name]
		n := 1
		for _, d := range shape {
			n *= int(d)
		}
		v := make([]float32, n)
		for i := range v {
			switch {
			case strings.HasSuffix(name, "_weights"):
				v[i] = 0.3
			case strings.Contains(name, "norm") && strings.HasSuffix(name, ".weight"):
				v[i] = 1
			case strings.HasSuffix(name, ".bias"):
				v[i] = 0
			default:
				v[i] = float32(rng.NormFloat64() * 0.2)
			}
		}
		m.Tensors = append(m.Tensors, Tensor{Name: name, DType: "F32", Shape: shape, Data: Float32LE(v)})
	}
	return m
}

// Find returns the tensor called name, or the one whose name ends in "."+name; nil when there is none.
func (m *Model) Find(name string) *Tensor {
	for i := range m.Tensors {
		if m.Tensors[i].Name == name || strings.HasSuffix(m.Tensors[i].Name, "."+name) {
			return &m.Tensors[i]
		}
	}
	return nil
}

// Remove drops the tensor Find(name) returns and reports whether there was one.
func (m *Model) Remove(name string) bool {
	x := m.Find(name)
	if x == nil {
		return false
	}
	m.Tensors = slices.DeleteFunc(m.Tensors, func(y Tensor) bool { return y.Name == x.Name })
	return true
}

// Fill sets every element of the float32 tensor Find(name) returns to v and reports whether there was
// one.
func (m *Model) Fill(name string, v float32) bool {
	x := m.Find(name)
	if x == nil {
		return false
	}
	vals := make([]float32, len(x.Data)/4)
	for i := range vals {
		vals[i] = v
	}
	x.Data = Float32LE(vals)
	return true
}

// Write writes config.json and model.safetensors (Safetensors with edit) into dir.
func (m *Model) Write(dir string, edit func(hdr map[string]map[string]any)) error {
	cfg, err := json.MarshalIndent(m.Config, "", "  ")
	if err != nil {
		return err
	}
	st, err := Safetensors(m.Tensors, edit)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "model.safetensors"), st, 0o644)
}

// Float32LE returns v as little-endian float32 bytes.
func Float32LE(v []float32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, x := range v {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(x))
	}
	return out
}

// ZipRecord is one member of a zip to build.
type ZipRecord struct {
	Name   string
	Data   []byte
	Method uint16 // zip.Store (0) or zip.Deflate
}

// Zip builds a zip archive of recs, in order.
func Zip(recs ...ZipRecord) ([]byte, error) {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, r := range recs {
		f, err := w.CreateHeader(&zip.FileHeader{Name: r.Name, Method: r.Method})
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(r.Data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// TorchArchive builds a zip laid out like torch.save's under the prefix "archive/": data.pkl,
// byteorder ("little"), the storages as data/KEY (in sorted key order) and version, all stored
// (zip.Store).
func TorchArchive(pkl []byte, storages map[string][]byte) ([]byte, error) {
	recs := []ZipRecord{{Name: "archive/data.pkl", Data: pkl}, {Name: "archive/byteorder", Data: []byte("little")}}
	keys := make([]string, 0, len(storages))
	for k := range storages {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		recs = append(recs, ZipRecord{Name: "archive/data/" + k, Data: storages[k]})
	}
	recs = append(recs, ZipRecord{Name: "archive/version", Data: []byte("3\n")})
	return Zip(recs...)
}
