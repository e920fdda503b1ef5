package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestTorchTestdata(t *testing.T) {
	// torch_small.bin is written by CPython's pickler (testdata/make_testdata.py).
	c := openT(t, "testdata/torch_small.bin")
	f := c.(*TorchFile)
	want := map[string]struct {
		dtype DType
		shape []int64
		vals  []float32
	}{
		"weight":   {F32, []int64{2, 3}, []float32{0, 1, 2, 3, 4, 5}},
		"weight_t": {F32, []int64{3, 2}, []float32{0, 3, 1, 4, 2, 5}},
		"half":     {F16, []int64{4}, []float32{1, -2.5, 65504, 5.960464477539063e-08}},
		"bf16":     {BF16, []int64{3}, []float32{1, -0.5, 3}},
		"param":    {F32, []int64{2}, []float32{12, 13}},
		"row":      {F32, []int64{3}, []float32{3, 4, 5}},
		"scalar":   {F32, []int64{}, []float32{11}},
	}
	names := append(slicesKeys(want), "ids")
	slices.Sort(names)
	if !slices.Equal(f.Names(), names) {
		t.Fatalf("names %v, want %v", f.Names(), names)
	}
	for name, w := range want {
		tn, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if tn.DType != w.dtype || !slices.Equal(tn.Shape, w.shape) {
			t.Errorf("%s: %s %v, want %s %v", name, tn.DType, tn.Shape, w.dtype, w.shape)
		}
		if got := mustFloat32(t, tn); !slices.Equal(got, w.vals) {
			t.Errorf("%s: %v, want %v", name, got, w.vals)
		}
	}
	ids, err := f.Tensor("ids")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := ids.Int64(); ids.DType != I64 || !slices.Equal(v, []int64{0, 1, 2, 3, 4}) {
		t.Errorf("ids %s %v", ids.DType, v)
	}
	if v, _ := f.View("weight_t"); v.Contiguous || !slices.Equal(v.Stride, []int64{1, 3}) || v.Storage != "0" {
		t.Errorf("weight_t view %+v", v)
	}
	if v, _ := f.View("param"); !v.Contiguous || v.Offset != 2 || v.Storage != "4" {
		t.Errorf("param view %+v", v)
	}
	// Contiguous stored views are views into the file; the two tensors of storage 0 share bytes.
	w, _ := f.Tensor("weight")
	r, _ := f.Tensor("row")
	if &w.Data[12] != &r.Data[0] {
		t.Error("row is not a view of weight's storage")
	}
}

func slicesKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTorchHostileTestdata(t *testing.T) {
	const marker = "/tmp/checkpoint-pwned"
	os.Remove(marker)
	for file, global := range map[string]string{
		"testdata/hostile_global.bin":       "os.system",
		"testdata/hostile_stack_global.bin": "builtins.eval",
	} {
		c, err := Open(file)
		if err == nil {
			c.Close()
			t.Fatalf("%s opened", file)
		}
		if !errors.Is(err, ErrUnsafePickle) || !strings.Contains(err.Error(), `"`+global+`"`) || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: %v", file, err)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a hostile pickle ran") // cannot happen: nothing is executed
	}
}

// tensorPickle is a state dict {"w": <F32 view of storage "0" with numel elements>}.
func tensorPickle(numel, offset int64, shape, stride []int64) []byte {
	return stateDict([]string{"w"}, func(p *pk, _ string) { p.tensor("FloatStorage", "0", numel, offset, shape, stride) })
}

func TestTorchBuilt(t *testing.T) {
	// Parameters, OrderedDict roots with BUILD, stride-0 and deflate records, all built here.
	p := newPickle().global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opMark)
	p.str("p").global("torch._utils", "_rebuild_parameter").op(opMark)
	p.tensor("FloatStorage", "0", 4, 0, []int64{2, 2}, []int64{2, 1})
	p.op(opNewTrue).global("collections", "OrderedDict").op(opEmptyTuple, opReduce, opTuple, opReduce)
	p.str("bcast").tensor("FloatStorage", "0", 4, 1, []int64{3, 2}, []int64{0, 1}) // expand: rows repeat
	p.str("h").tensor("HalfStorage", "1", 2, 0, []int64{2}, []int64{1})
	p.str("empty").tensor("FloatStorage", "0", 4, 9, []int64{0, 3}, []int64{3, 1})
	p.op(opSetItems).op(opEmptyDict).str("_metadata").op(opEmptyDict, opSetItem, opBuild)
	arch := buildZip(t,
		zrec("m/data.pkl", p.bytes(), zip.Deflate),
		zrec("m/data/0", f32Bytes(1, 2, 3, 4), zip.Store),
		zrec("m/data/1", []byte{0x00, 0x3c, 0x00, 0xc0}, zip.Deflate),
	)
	c := openT(t, writeTemp(t, "model.pt", arch))
	f := c.(*TorchFile)
	check := func(name string, want []float32) {
		t.Helper()
		tn, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := mustFloat32(t, tn); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("p", []float32{1, 2, 3, 4})
	check("bcast", []float32{2, 3, 2, 3, 2, 3})
	check("h", []float32{1, -2})
	check("empty", []float32{})
	if _, err := f.Tensor("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	f.Close()
	if _, err := f.Tensor("p"); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v", err)
	}
}

func TestTorchMalformed(t *testing.T) {
	good := tensorPickle(4, 0, []int64{2, 2}, []int64{2, 1})
	data := map[string][]byte{"0": f32Bytes(1, 2, 3, 4)}
	for _, c := range []struct {
		name string
		file []byte
		kind error
		want string
	}{
		{"not a zip", []byte("hello, this is not an archive"), ErrFormat, "not a zip"},
		{"empty file", nil, ErrFormat, "not a zip"},
		{"legacy torch.save", []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'}, ErrUnsupported, "legacy"},
		{"zip without data.pkl", buildZip(t, zrec("archive/version", []byte("3\n"), zip.Store)), ErrFormat, "no <name>/data.pkl"},
		{"data.pkl at top level", buildZip(t, zrec("data.pkl", good, zip.Store)), ErrFormat, "no <name>/data.pkl"},
		{"two data.pkl", buildZip(t, zrec("a/data.pkl", good, zip.Store), zrec("b/data.pkl", good, zip.Store)), ErrFormat, "several data.pkl"},
		{"big-endian", buildZip(t, zrec("a/data.pkl", good, zip.Store), zrec("a/byteorder", []byte("big"), zip.Store)), ErrUnsupported, "byte order"},
		{"truncated pickle", torchZip(t, good[:len(good)-1], data), ErrFormat, "without STOP"},
		{"unknown opcode", torchZip(t, []byte{opProto, 2, 0xfe, opStop}, data), ErrFormat, "invalid opcode"},
		{"stack underflow", torchZip(t, []byte{opProto, 2, opSetItems, opStop}, data), ErrFormat, "no MARK"},
		{"giant string", torchZip(t, []byte{opProto, 2, opBinUnicode8, 0, 0, 0, 0, 0, 0, 0, 0x40, opStop}, data), ErrFormat, "needs 4611686018427387904 bytes"},
		{"hostile GLOBAL", torchZip(t, newPickle().global("os", "system").str("id").op(opTuple1, opReduce).bytes(), data), ErrUnsafePickle, `"os.system"`},
		{"hostile STACK_GLOBAL", torchZip(t, newPickle().stackGlobal("builtins", "eval").str("1").op(opTuple1, opReduce).bytes(), data), ErrUnsafePickle, `"builtins.eval"`},
		{"root not a dict", torchZip(t, newPickle().op(opEmptyList).bytes(), data), ErrFormat, "not a state dict"},
		{"non-str key", torchZip(t, newPickle().op(opEmptyDict).int(1).op(opNone, opSetItem).bytes(), data), ErrFormat, "not a str"},
		{"value not a tensor", torchZip(t, newPickle().op(opEmptyDict).str("x").int(3).op(opSetItem).bytes(), data), ErrFormat, `tensor "x": value is a int`},
		{"storage missing", torchZip(t, good, nil), ErrFormat, `record archive/data/0 is missing`},
		{"storage record too small", torchZip(t, good, map[string][]byte{"0": f32Bytes(1, 2)}), ErrFormat, "do not fit"},
		{"view beyond storage", torchZip(t, tensorPickle(4, 1, []int64{2, 2}, []int64{2, 1}), data), ErrFormat, "reaches element 4"},
		{"strided view beyond storage", torchZip(t, tensorPickle(4, 0, []int64{2, 2}, []int64{1, 3}), data), ErrFormat, "reaches element 4"},
		{"offset overflow", torchZip(t, tensorPickle(4, 1<<62, []int64{3}, []int64{1 << 62}), data), ErrFormat, "overflows"},
		{"shape and stride differ", torchZip(t, tensorPickle(4, 0, []int64{4}, []int64{1, 1}), data), ErrFormat, "stride has 2"},
		{"expanded view too large", torchZip(t, tensorPickle(1, 0, []int64{1 << 30}, []int64{0}), map[string][]byte{"0": f32Bytes(1)}), ErrUnsupported, "larger than its storage"},
		{"storage dtype clash", torchZip(t, stateDict([]string{"a", "b"}, func(p *pk, n string) {
			st := map[string]string{"a": "FloatStorage", "b": "IntStorage"}[n]
			p.tensor(st, "0", 4, 0, []int64{4}, []int64{1})
		}), data), ErrFormat, "used as"},
		{"unsupported compression", func() []byte {
			b := torchZip(t, good, data)
			return setMethod(t, b, "archive/data.pkl", 12)
		}(), ErrFormat, "compression method 12"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, "bad.bin", c.file)
			f, err := OpenTorch(path)
			if err == nil {
				f.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q: want %v containing %q and the path", err, c.kind, c.want)
			}
			if _, err2 := Open(path); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("Open: %v", err2)
			}
		})
	}
}

func TestTorchCRCMismatch(t *testing.T) {
	arch := torchZip(t, tensorPickle(4, 0, []int64{4}, []int64{1}), map[string][]byte{"0": f32Bytes(1, 2, 3, 4)})
	// Flip one byte of the stored storage record (its data is unique in the archive): Open does not
	// read storages, the first Tensor of that storage checks the CRC.
	arch[bytes.Index(arch, f32Bytes(1, 2, 3, 4))] ^= 0xff
	f, err := OpenTorch(writeTemp(t, "crc.bin", arch))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Tensor("w"); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "CRC-32") || !strings.Contains(err.Error(), `"w"`) {
		t.Fatalf("error %v", err)
	}
}

// setMethod rewrites the compression method of a record in both its local and central headers.
func setMethod(t *testing.T, arch []byte, name string, method uint16) []byte {
	t.Helper()
	out := bytes.Clone(arch)
	for _, sig := range []struct {
		magic  string
		method int // offset of the method field
		name   int // offset of the name
	}{{"PK\x03\x04", 8, 30}, {"PK\x01\x02", 10, 46}} {
		for i := 0; ; {
			j := bytes.Index(out[i:], []byte(sig.magic))
			if j < 0 {
				break
			}
			i += j
			if bytes.HasPrefix(out[i+sig.name:], []byte(name)) {
				out[i+sig.method] = byte(method)
				out[i+sig.method+1] = byte(method >> 8)
			}
			i += 4
		}
	}
	return out
}

func TestGather(t *testing.T) {
	// A 2x3 storage read as its 3x2 transpose, with an offset of one row of a bigger storage.
	data := []byte{9, 9, 9, 0, 1, 2, 3, 4, 5}
	got := gather(data, 1, 3, []int64{3, 2}, []int64{1, 3}, 6)
	if !bytes.Equal(got, []byte{0, 3, 1, 4, 2, 5}) {
		t.Fatalf("gather = %v", got)
	}
	if got := gather(data, 1, 4, nil, nil, 1); !bytes.Equal(got, []byte{1}) {
		t.Fatalf("scalar gather = %v", got)
	}
}

func TestIsContiguous(t *testing.T) {
	for _, c := range []struct {
		shape, stride []int64
		want          bool
	}{
		{nil, nil, true}, {[]int64{2, 3}, []int64{3, 1}, true}, {[]int64{3, 2}, []int64{1, 3}, false},
		{[]int64{1, 257}, []int64{0, 1}, true}, {[]int64{2, 1, 3}, []int64{3, 99, 1}, true},
		{[]int64{0, 5}, []int64{7, 7}, true}, {[]int64{2}, []int64{0}, false},
	} {
		if got := isContiguous(c.shape, c.stride); got != c.want {
			t.Errorf("isContiguous(%v, %v) = %v", c.shape, c.stride, got)
		}
	}
}

func TestTorchGlobalVariants(t *testing.T) {
	// NEWOBJ OrderedDict root; _rebuild_parameter_with_state; 7-argument _rebuild_tensor_v2 with metadata;
	// every storage type, including UntypedStorage (read as bytes).
	types := []struct {
		storage string
		dtype   DType
		data    []byte
		want    []int64
	}{
		{"DoubleStorage", F64, f64le(2.5), nil},
		{"IntStorage", I32, []byte{0xfe, 0xff, 0xff, 0xff}, []int64{-2}},
		{"ShortStorage", I16, []byte{0x01, 0x80}, []int64{-32767}},
		{"CharStorage", I8, []byte{0x80}, []int64{-128}},
		{"ByteStorage", U8, []byte{0x80}, []int64{128}},
		{"BoolStorage", BOOL, []byte{1}, []int64{1}},
		{"UntypedStorage", U8, []byte{7}, []int64{7}},
		{"LongStorage", I64, i64Bytes(-9), []int64{-9}},
	}
	p := newPickle().global("collections", "OrderedDict").op(opEmptyTuple, opNewObj, opMark)
	storages := map[string][]byte{}
	for i, c := range types {
		key := string(rune('a' + i))
		storages[key] = c.data
		p.str(c.storage)
		p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
		p.op(opMark).str("storage").global("torch", c.storage).str(key).str("cuda:0").int(int64(len(c.data)/c.dtype.Size())).op(opTuple, opBinPersID)
		p.int(0).ints(1).ints(1).op(opNewFalse, opEmptyDict, opNone, opTuple, opReduce)
	}
	p.str("param").global("torch._utils", "_rebuild_parameter_with_state").op(opMark)
	p.tensor("FloatStorage", "param", 1, 0, []int64{1}, []int64{1})
	p.op(opNewTrue, opEmptyDict, opEmptyDict, opTuple, opReduce)
	p.op(opSetItems)
	storages["param"] = f32Bytes(4)
	c := openT(t, writeTemp(t, "v.bin", torchZip(t, p.bytes(), storages)))
	for _, ty := range types {
		tn, err := c.Tensor(ty.storage)
		if err != nil {
			t.Fatal(err)
		}
		if tn.DType != ty.dtype {
			t.Errorf("%s: dtype %s", ty.storage, tn.DType)
		}
		if ty.want == nil {
			if v := mustFloat32(t, tn); v[0] != 2.5 {
				t.Errorf("%s: %v", ty.storage, v)
			}
			continue
		}
		if v, err := tn.Int64(); err != nil || !slices.Equal(v, ty.want) {
			t.Errorf("%s: %v %v", ty.storage, v, err)
		}
	}
	tn, err := c.Tensor("param")
	if err != nil || mustFloat32(t, tn)[0] != 4 {
		t.Fatalf("param: %v", err)
	}
}

func f64le(v float64) []byte {
	return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v))
}

func TestConcurrentTensor(t *testing.T) {
	c := openT(t, "testdata/torch_small.bin") // storage "2" is deflated once, on first use
	done := make(chan error)
	for range 8 {
		go func() {
			var err error
			for _, name := range c.Names() {
				if _, e := c.Tensor(name); e != nil {
					err = e
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
