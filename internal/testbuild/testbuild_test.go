package testbuild

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image/png"
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
