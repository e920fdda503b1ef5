package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sdsafety/safety/internal/testbuild"
)

// pk builds pickles opcode by opcode, for tests.
type pk struct{ b []byte }

func newPickle() *pk { return &pk{b: []byte{opProto, 2}} }

func (p *pk) op(ops ...byte) *pk { p.b = append(p.b, ops...); return p }

func (p *pk) str(s string) *pk {
	p.b = append(p.b, opBinUnicode)
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
	return p
}

func (p *pk) shortStr(s string) *pk {
	p.b = append(p.b, opShortBinUnicode, byte(len(s)))
	p.b = append(p.b, s...)
	return p
}

func (p *pk) int(n int64) *pk {
	switch {
	case n >= 0 && n < 256:
		p.b = append(p.b, opBinInt1, byte(n))
	case n >= 0 && n < 65536:
		p.b = append(p.b, opBinInt2)
		p.b = binary.LittleEndian.AppendUint16(p.b, uint16(n))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		p.b = append(p.b, opBinInt)
		p.b = binary.LittleEndian.AppendUint32(p.b, uint32(int32(n)))
	default:
		p.b = append(p.b, opLong1, 8)
		p.b = binary.LittleEndian.AppendUint64(p.b, uint64(n))
	}
	return p
}

func (p *pk) global(module, name string) *pk {
	p.b = append(p.b, opGlobal)
	p.b = append(p.b, module+"\n"+name+"\n"...)
	return p
}

func (p *pk) stackGlobal(module, name string) *pk {
	return p.shortStr(module).shortStr(name).op(opStackGlobal)
}

func (p *pk) ints(ns ...int64) *pk {
	p.op(opMark)
	for _, n := range ns {
		p.int(n)
	}
	return p.op(opTuple)
}

// tensor emits torch._utils._rebuild_tensor_v2(<persistent storage>, offset, shape, stride, False, OrderedDict()).
func (p *pk) tensor(storageType, key string, numel, offset int64, shape, stride []int64) *pk {
	p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	p.op(opMark).str("storage").global("torch", storageType).str(key).str("cpu").int(numel).op(opTuple, opBinPersID)
	p.int(offset).ints(shape...).ints(stride...).op(opNewFalse)
	p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
	return p.op(opTuple, opReduce)
}

func (p *pk) bytes() []byte { return append(p.b, opStop) }

// stateDict returns a protocol-2 pickle of {name: body(name)} in the given order.
func stateDict(names []string, body func(p *pk, name string)) []byte {
	p := newPickle().op(opEmptyDict, opMark)
	for _, n := range names {
		p.str(n)
		body(p, n)
	}
	return p.op(opSetItems).bytes()
}

// zrec is a zip member to build: name, data, method (zip.Store or zip.Deflate).
func zrec(name string, data []byte, method uint16) testbuild.ZipRecord {
	return testbuild.ZipRecord{Name: name, Data: data, Method: method}
}

// buildZip is testbuild.Zip, failing the test on error.
func buildZip(t testing.TB, recs ...testbuild.ZipRecord) []byte {
	t.Helper()
	b, err := testbuild.Zip(recs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// torchZip is testbuild.TorchArchive (a torch.save-like archive with prefix "archive/"), failing the
// test on error.
func torchZip(t testing.TB, pkl []byte, storages map[string][]byte) []byte {
	t.Helper()
	b, err := testbuild.TorchArchive(pkl, storages)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stFile builds a safetensors file from a header value (marshalled to JSON) and a data section.
func stFile(t testing.TB, header any, data []byte) []byte {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	return stRaw(h, data)
}

func stRaw(header, data []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, data...)
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func f32Bytes(vs ...float32) []byte {
	var out []byte
	for _, v := range vs {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v))
	}
	return out
}

func i64Bytes(vs ...int64) []byte {
	var out []byte
	for _, v := range vs {
		out = binary.LittleEndian.AppendUint64(out, uint64(v))
	}
	return out
}

func mustFloat32(t testing.TB, tn Tensor) []float32 {
	t.Helper()
	v, err := tn.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
