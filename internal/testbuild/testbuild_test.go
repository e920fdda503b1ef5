package testbuild

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSafetensors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tensors []Tensor
		edit    func(map[string]map[string]any)
		offsets map[string][2]float64
	}{
		{"two tensors back to back", []Tensor{{"a", "F32", []int64{1}, make([]byte, 4)}, {"b", "F16", []int64{3}, make([]byte, 6)}},
			nil, map[string][2]float64{"a": {0, 4}, "b": {4, 10}}},
		{"edited header", []Tensor{{"a", "F32", []int64{1}, make([]byte, 4)}},
			func(h map[string]map[string]any) { h["a"]["data_offsets"] = []int{0, 99} }, map[string][2]float64{"a": {0, 99}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Safetensors(tc.tensors, tc.edit)
			if err != nil {
				t.Fatal(err)
			}
			n := binary.LittleEndian.Uint64(b)
			if n%8 != 0 || int(8+n) > len(b) {
				t.Fatalf("header length %d for a %d-byte file", n, len(b))
			}
			var hdr map[string]struct {
				Offsets [2]float64 `json:"data_offsets"`
			}
			if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.offsets {
				if hdr[name].Offsets != want {
					t.Errorf("%s: offsets %v, want %v", name, hdr[name].Offsets, want)
				}
			}
		})
	}
}

func TestImageHeaders(t *testing.T) {
	if c, err := png.DecodeConfig(bytes.NewReader(PNGWithHeader(70000, 3))); err != nil || c.Width != 70000 || c.Height != 3 {
		t.Errorf("PNG header: %+v %v", c, err)
	}
	// SOI, then SOF0 (FFC0, length 17, precision 8, height, width): Go's decoder wants a scan after it.
	j := JPEGWithHeader(65000, 2)
	if !bytes.HasPrefix(j, []byte{0xff, 0xd8, 0xff, 0xc0, 0, 17, 8}) || binary.BigEndian.Uint16(j[7:]) != 2 ||
		binary.BigEndian.Uint16(j[9:]) != 65000 || !bytes.HasSuffix(j, []byte{0xff, 0xd9}) {
		t.Errorf("JPEG header % x", j)
	}
}

func TestRandomModel(t *testing.T) {
	shapes := map[string][]int64{"p.norm.weight": {2}, "p.norm.bias": {2}, "w": {2, 3}, "concept_embeds_weights": {3}}
	m := RandomModel(map[string]any{"model_type": "clip"}, shapes, 1)
	want := map[string]float32{"p.norm.weight": 1, "p.norm.bias": 0, "concept_embeds_weights": 0.3}
	var names []string
	for _, x := range m.Tensors {
		names = append(names, x.Name)
		n := 1
		for _, d := range x.Shape {
			n *= int(d)
		}
		if len(x.Data) != 4*n {
			t.Errorf("%s: %d bytes for shape %v", x.Name, len(x.Data), x.Shape)
		}
		if v, ok := want[x.Name]; ok && !bytes.Equal(x.Data, Float32LE(slices.Repeat([]float32{v}, len(x.Data)/4))) {
			t.Errorf("%s: want every element %v", x.Name, v)
		}
	}
	if !slices.IsSorted(names) || len(names) != 4 {
		t.Errorf("tensors %v, want the 4 names sorted", names)
	}
	if m.Find("norm.bias") == nil || m.Find("orm.bias") != nil || m.Find("nothing") != nil {
		t.Error("Find: by name or by a whole trailing path only")
	}
	if !m.Fill("w", 2) || !bytes.Equal(m.Find("w").Data, Float32LE(slices.Repeat([]float32{2}, 6))) {
		t.Error("Fill")
	}
	if !m.Remove("norm.bias") || m.Find("norm.bias") != nil || len(m.Tensors) != 3 || m.Remove("norm.bias") {
		t.Error("Remove")
	}
	dir := t.TempDir()
	if err := m.Write(dir, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"config.json", "model.safetensors"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestTorchArchive(t *testing.T) {
	b, err := TorchArchive([]byte("pkl"), map[string][]byte{"1": {1}, "0": {0}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range r.File {
		names = append(names, f.Name)
		if f.Method != zip.Store {
			t.Errorf("%s: method %d, want stored", f.Name, f.Method)
		}
	}
	want := []string{"archive/data.pkl", "archive/byteorder", "archive/data/0", "archive/data/1", "archive/version"}
	if !slices.Equal(names, want) {
		t.Errorf("members %v, want %v", names, want)
	}
}
