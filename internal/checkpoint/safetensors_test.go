package checkpoint

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

type stEnt struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

func TestSafetensorsRead(t *testing.T) {
	data := append(f32Bytes(1, 2, 3, 4, 5, 6), i64Bytes(7, 8)...)
	data = append(data, 0x00, 0x3c) // F16 1.0
	hdr := map[string]any{
		"__metadata__": map[string]string{"format": "pt"},
		"w":            stEnt{"F32", []int64{2, 3}, []int64{0, 24}},
		"ids":          stEnt{"I64", []int64{2}, []int64{24, 40}},
		"h":            stEnt{"F16", []int64{}, []int64{40, 42}},
		"empty":        stEnt{"BF16", []int64{0, 4}, []int64{42, 42}},
	}
	path := writeTemp(t, "x.safetensors", stFile(t, hdr, data))
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path() != path || f.Metadata()["format"] != "pt" {
		t.Errorf("path %q metadata %v", f.Path(), f.Metadata())
	}
	if got := f.Names(); !slices.Equal(got, []string{"empty", "h", "ids", "w"}) {
		t.Errorf("names %v", got)
	}
	w, err := f.Tensor("w")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustFloat32(t, w); !slices.Equal(got, []float32{1, 2, 3, 4, 5, 6}) || !slices.Equal(w.Shape, []int64{2, 3}) {
		t.Errorf("w = %v %v", got, w.Shape)
	}
	h, _ := f.Tensor("h")
	if got := mustFloat32(t, h); len(got) != 1 || got[0] != 1 || len(h.Shape) != 0 {
		t.Errorf("scalar h = %v %v", got, h.Shape)
	}
	e, _ := f.Tensor("empty")
	if len(e.Data) != 0 || e.NumElements() != 0 {
		t.Errorf("empty: %d bytes", len(e.Data))
	}
	if _, ok := f.Info("nope"); ok {
		t.Error("Info of a missing name")
	}
	if _, err := f.Tensor("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("missing: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := f.Tensor("w"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

func TestSafetensorsMalformed(t *testing.T) {
	ent := func(dtype string, shape []int64, b, e int64) stEnt { return stEnt{dtype, shape, []int64{b, e}} }
	hugeLen := binary.LittleEndian.AppendUint64(nil, 1<<40)
	for _, c := range []struct {
		name string
		file []byte
		kind error
		want string // in the message
	}{
		{"empty file", nil, ErrFormat, "too short"},
		{"truncated length", []byte{1, 2, 3}, ErrFormat, "too short"},
		{"header longer than file", stRaw([]byte(`{}`), nil)[:9], ErrFormat, "exceeds the 1 bytes"},
		{"header length over limit", append(hugeLen, '{', '}'), ErrFormat, "exceeds the limit"},
		{"header not JSON", stRaw([]byte(`{"a": nope}`), nil), ErrFormat, "not JSON"},
		{"header not an object", stRaw([]byte(`[1,2]`), nil), ErrFormat, "not a JSON object"},
		{"header truncated JSON", stRaw([]byte(`{"a": {"dtype": "F32"`), nil), ErrFormat, `tensor "a"`},
		{"trailing garbage", stRaw([]byte(`{} x`), nil), ErrFormat, "trailing"},
		{"duplicate name", stRaw([]byte(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`), nil), ErrFormat, "twice"},
		{"metadata not strings", stFile(t, map[string]any{"__metadata__": map[string]int{"x": 1}}, nil), ErrFormat, "__metadata__"},
		{"entry not an object", stFile(t, map[string]any{"a": 3}, nil), ErrFormat, `tensor "a"`},
		{"missing dtype", stFile(t, map[string]any{"a": map[string]any{"shape": []int{1}, "data_offsets": []int{0, 1}}}, []byte{0}), ErrFormat, "missing dtype"},
		{"missing shape", stFile(t, map[string]any{"a": map[string]any{"dtype": "U8", "data_offsets": []int{0, 1}}}, []byte{0}), ErrFormat, "missing shape"},
		{"one offset", stFile(t, map[string]any{"a": map[string]any{"dtype": "U8", "shape": []int{1}, "data_offsets": []int{0}}}, []byte{0}), ErrFormat, "data_offsets"},
		{"unknown dtype", stFile(t, map[string]any{"a": ent("Q7", []int64{1}, 0, 1)}, []byte{0}), ErrUnsupported, `dtype "Q7"`},
		{"unsupported dtype", stFile(t, map[string]any{"a": ent("F8_E4M3", []int64{1}, 0, 1)}, []byte{0}), ErrUnsupported, `tensor "a"`},
		{"negative dim", stFile(t, map[string]any{"a": ent("F32", []int64{2, -1}, 0, 0)}, nil), ErrFormat, "invalid shape"},
		{"shape overflow", stFile(t, map[string]any{"a": ent("F32", []int64{1 << 62, 4}, 0, 0)}, nil), ErrFormat, "invalid shape"},
		{"bytes overflow", stFile(t, map[string]any{"a": ent("F64", []int64{1 << 61, 2}, 0, 0)}, nil), ErrFormat, "too large"},
		{"negative offset", stFile(t, map[string]any{"a": ent("U8", []int64{1}, -1, 0)}, []byte{0}), ErrFormat, "out of range"},
		{"end before begin", stFile(t, map[string]any{"a": ent("U8", []int64{0}, 1, 0)}, []byte{0}), ErrFormat, "out of range"},
		{"offset past data", stFile(t, map[string]any{"a": ent("F32", []int64{2}, 0, 8)}, f32Bytes(1)), ErrFormat, "out of range"},
		{"wrong byte length", stFile(t, map[string]any{"a": ent("F32", []int64{3}, 0, 8)}, f32Bytes(1, 2)), ErrFormat, "needs 12"},
		{"overlap", stFile(t, map[string]any{"a": ent("F32", []int64{2}, 0, 8), "b": ent("F32", []int64{1}, 4, 8)}, f32Bytes(1, 2)), ErrFormat, "overlap"},
		{"overlap nested", stFile(t, map[string]any{
			"a": ent("U8", []int64{10}, 0, 10), "b": ent("U8", []int64{2}, 2, 4), "c": ent("U8", []int64{2}, 6, 8),
		}, make([]byte, 10)), ErrFormat, "overlap"},
		{"float offset", stRaw([]byte(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0.5,1]}}`), []byte{0}), ErrFormat, `tensor "a"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "bad.safetensors", c.file)
			f, err := OpenSafetensors(path)
			if err == nil {
				f.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q: want %v containing %q and the path", err, c.kind, c.want)
			}
			// Open sniffs the same file as safetensors and fails the same way.
			if _, err2 := Open(path); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("Open: %v", err2)
			}
		})
	}
}

func TestSafetensorsPaddedHeader(t *testing.T) {
	// The format allows the header to be padded with spaces (for alignment of the data section).
	hdr := []byte(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}    `)
	f, err := parseSafetensors("mem", stRaw(hdr, f32Bytes(2)))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.Tensor("a")
	if v := mustFloat32(t, a); v[0] != 2 {
		t.Fatal(v)
	}
}

func TestSafetensorsDataIsView(t *testing.T) {
	buf := stFile(t, map[string]any{"a": stEnt{"U8", []int64{2}, []int64{0, 2}}}, []byte{5, 6})
	f, err := parseSafetensors("mem", buf)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := f.Tensor("a")
	if &a.Data[0] != &buf[len(buf)-2] || cap(a.Data) != 2 {
		t.Fatal("Data is not a capped view into the file")
	}
}
