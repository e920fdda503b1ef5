package checkpoint

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// runPickle runs a pickle with the torch globals and a persistent loader that accepts any storage.
func runPickle(data []byte) (any, error) {
	f := &TorchFile{storages: make(map[string]*torchStorage)}
	u := &unpickler{data: data, findGlobal: torchGlobal, persistentLoad: f.persistentLoad}
	return u.load()
}

func TestPickleValues(t *testing.T) {
	p := newPickle().op(opMark).
		int(7).int(300).int(-5).int(1<<40).int(-(1<<40)).
		op(opNone, opNewTrue, opNewFalse).
		shortStr("s").str("ü").
		op(opBinFloat, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0). // 1.5, big-endian
		op(opShortBinBytes, 2, 'a', 'b').
		op(opLong1, 0).                            // 0
		op(opLong1, 2, 0xff, 0x7f).                // 32767
		op(opLong1, 1, 0xff).                      // -1
		op(opLong1, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0). // 1, redundant sign byte
		op(opTuple)
	v, err := runPickle(p.bytes())
	if err != nil {
		t.Fatal(err)
	}
	got := v.(pyTuple)
	want := []any{int64(7), int64(300), int64(-5), int64(1 << 40), int64(-(1 << 40)), nil, true, false, "s", "ü", 1.5, nil, int64(0), int64(32767), int64(-1), int64(1)}
	if len(got) != len(want) {
		t.Fatalf("got %d values", len(got))
	}
	for i := range want {
		if i == 11 {
			if string(got[i].([]byte)) != "ab" {
				t.Errorf("bytes: %v", got[i])
			}
			continue
		}
		if got[i] != want[i] {
			t.Errorf("value %d: got %#v, want %#v", i, got[i], want[i])
		}
	}
}

func TestPickleContainersAndMemo(t *testing.T) {
	// d = {}; d['a'] = [1, 2, 3]; d['b'] = d['a'] (memo); (d, d) with MEMOIZE/BINGET.
	p := newPickle().op(opEmptyDict, opBinPut, 0).
		str("a").op(opEmptyList, opLongBinPut, 1, 0, 0, 0).int(1).op(opAppend).op(opMark).int(2).int(3).op(opAppends).op(opSetItem).
		str("b").op(opLongBinGet, 1, 0, 0, 0).op(opSetItem).
		op(opMemoize, opBinGet, 0, opTuple2)
	v, err := runPickle(p.bytes())
	if err != nil {
		t.Fatal(err)
	}
	tup := v.(pyTuple)
	d := tup[0].(*pyDict)
	if tup[1] != d || len(d.keys) != 2 || d.vals[0] != d.vals[1] || len(d.vals[0].(*pyList).items) != 3 {
		t.Fatalf("got %#v", tup)
	}
}

func TestPickleMalformed(t *testing.T) {
	bigLen := func(op byte, n uint64, size int) []byte {
		b := []byte{opProto, 2, op}
		b = binary.LittleEndian.AppendUint64(b, n)[:3+size]
		return append(b, "abc"...)
	}
	for _, c := range []struct {
		name string
		data []byte
		kind error
		want string
	}{
		{"empty", nil, ErrFormat, "without STOP"},
		{"truncated", newPickle().op(opEmptyDict).b, ErrFormat, "without STOP"},
		{"truncated int", []byte{opProto, 2, opBinInt, 1, 2}, ErrFormat, "BININT"},
		{"truncated string", []byte{opProto, 2, opBinUnicode, 10, 0, 0, 0, 'a'}, ErrFormat, "needs 10 bytes"},
		{"giant BINUNICODE", bigLen(opBinUnicode, 0xffffffff, 4), ErrFormat, "needs 4294967295 bytes"},
		{"giant BINUNICODE8", bigLen(opBinUnicode8, 1<<62, 8), ErrFormat, "needs 4611686018427387904 bytes"},
		{"giant BINBYTES8", bigLen(opBinBytes8, 1<<63, 8), ErrFormat, "BINBYTES8"},
		{"negative BINSTRING", bigLen(opBinString, 0xfffffff0, 4), ErrFormat, "negative"},
		{"giant FRAME", bigLen(opFrame, 1<<40, 8), ErrFormat, "frame"},
		{"bad protocol", []byte{opProto, 9, opNone, opStop}, ErrFormat, "protocol 9"},
		{"invalid opcode", []byte{opProto, 2, 0xff, opStop}, ErrFormat, "0xff"},
		{"stack underflow STOP", []byte{opProto, 2, opStop}, ErrFormat, "underflow"},
		{"stack underflow TUPLE2", []byte{opProto, 2, opNone, opTuple2, opStop}, ErrFormat, "underflow"},
		{"underflow below MARK", []byte{opProto, 2, opNone, opMark, opTuple1, opStop}, ErrFormat, "underflow"},
		{"TUPLE without MARK", []byte{opProto, 2, opNone, opTuple, opStop}, ErrFormat, "no MARK"},
		{"SETITEMS odd", newPickle().op(opEmptyDict, opMark).int(1).op(opSetItems).bytes(), ErrFormat, "odd"},
		{"unhashable key", newPickle().op(opEmptyDict, opEmptyList, opNone, opSetItem).bytes(), ErrFormat, "dict key"},
		{"tuple key", newPickle().op(opEmptyDict, opEmptyTuple, opNone, opSetItem).bytes(), ErrFormat, "dict key"},
		{"BINGET unknown", []byte{opProto, 2, opBinGet, 3, opStop}, ErrFormat, "memo index 3"},
		{"BINPUT empty", []byte{opProto, 2, opBinPut, 0, opNone, opStop}, ErrFormat, "underflow"},
		{"LONG1 too large", []byte{opProto, 2, opLong1, 9, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, opStop}, ErrFormat, "64 bits"},
		{"GLOBAL no newline", []byte{opProto, 2, opGlobal, 'o', 's'}, ErrFormat, "newline"},
		{"STACK_GLOBAL not str", newPickle().int(1).int(2).op(opStackGlobal).bytes(), ErrFormat, "must be str"},
		{"REDUCE args not tuple", newPickle().global("collections", "OrderedDict").op(opEmptyList, opReduce).bytes(), ErrFormat, "not a tuple"},
		{"REDUCE non-callable", newPickle().op(opNone, opEmptyTuple, opReduce).bytes(), ErrUnsafePickle, "None is not callable"},
		{"REDUCE storage type", newPickle().global("torch", "FloatStorage").op(opEmptyTuple, opReduce).bytes(), ErrUnsafePickle, "torch.FloatStorage is not callable"},
		{"OrderedDict with args", newPickle().global("collections", "OrderedDict").op(opEmptyList, opTuple1, opReduce).bytes(), ErrFormat, "no arguments"},
		{"APPEND to dict", newPickle().op(opEmptyDict, opNone, opAppend).bytes(), ErrUnsafePickle, "append to a dict"},
		{"SETITEM on list", newPickle().op(opEmptyList, opNone, opNone, opSetItem).bytes(), ErrUnsafePickle, "set items of a list"},
		{"BUILD on tuple", newPickle().op(opEmptyTuple, opEmptyDict, opBuild).bytes(), ErrUnsafePickle, "state of a tuple"},
		{"BUILD with list", newPickle().op(opEmptyDict, opEmptyList, opBuild).bytes(), ErrFormat, "not a dict"},
		{"persistent id not a tuple", newPickle().str("x").op(opBinPersID).bytes(), ErrFormat, "persistent id"},
		{"persistent id bad tag", newPickle().op(opMark).str("module").global("torch", "FloatStorage").str("0").str("cpu").int(1).op(opTuple, opBinPersID).bytes(), ErrFormat, "tag"},
		{"persistent id bad numel", newPickle().op(opMark).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(-1).op(opTuple, opBinPersID).bytes(), ErrFormat, "non-negative"},
		{"rebuild wrong arity", newPickle().global("torch._utils", "_rebuild_tensor_v2").op(opEmptyTuple, opReduce).bytes(), ErrFormat, "6 or 7 arguments"},
		{"too many dims", newPickle().global("torch._utils", "_rebuild_tensor_v2").op(opMark).
			op(opMark).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(1).op(opTuple, opBinPersID).
			int(0).ints(make([]int64, 65)...).ints(make([]int64, 65)...).op(opNewFalse, opEmptyDict, opTuple, opReduce).bytes(), ErrFormat, "more than 64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := runPickle(c.data)
			if err == nil {
				t.Fatalf("no error, got %#v", v)
			}
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q: want %v containing %q", err, c.kind, c.want)
			}
		})
	}
}

func TestPickleRefusesOpcodes(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"INST", []byte("\x80\x02(ios\nsystem\nS'ls'\n.")},
		{"OBJ", []byte("\x80\x02(ccollections\nOrderedDict\no.")},
		{"EXT1", []byte("\x80\x02\x82\x01.")},
		{"EXT2", []byte("\x80\x02\x83\x01\x00.")},
		{"EXT4", []byte("\x80\x02\x84\x01\x00\x00\x00.")},
		{"PERSID", []byte("\x80\x02P0\n.")},
		{"STRING", []byte("\x80\x02S'x'\n.")},
		{"INT", []byte("\x80\x02I1\n.")},
		{"GET", []byte("\x80\x02g0\n.")},
		{"PUT", []byte("\x80\x02Np0\n.")},
		{"NEWOBJ_EX", []byte("\x80\x04N)}\x92.")},
		{"EMPTY_SET", []byte("\x80\x04\x8f.")},
		{"NEXT_BUFFER", []byte("\x80\x05\x97.")},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := runPickle(c.data)
			if !errors.Is(err, ErrUnsafePickle) || !strings.Contains(err.Error(), "opcode "+c.name) {
				t.Fatalf("error %v: want ErrUnsafePickle naming %s", err, c.name)
			}
		})
	}
}

// The interpreter has no way to run code; the test checks that a hostile global is refused at the
// GLOBAL / STACK_GLOBAL itself, before any REDUCE, and that the error names it.
func TestPickleRefusesGlobals(t *testing.T) {
	for _, c := range []struct {
		name, global string
		data         []byte
	}{
		{"os.system GLOBAL", "os.system", newPickle().global("os", "system").str("touch /tmp/pwned").op(opTuple1, opReduce).bytes()},
		{"posix.system GLOBAL", "posix.system", newPickle().global("posix", "system").str("id").op(opTuple1, opReduce).bytes()},
		{"builtins.eval GLOBAL", "builtins.eval", newPickle().global("builtins", "eval").str("1+1").op(opTuple1, opReduce).bytes()},
		{"builtins.eval STACK_GLOBAL", "builtins.eval", newPickle().stackGlobal("builtins", "eval").str("1+1").op(opTuple1, opReduce).bytes()},
		{"os.system STACK_GLOBAL", "os.system", newPickle().stackGlobal("os", "system").str("id").op(opTuple1, opReduce).bytes()},
		{"subprocess.Popen NEWOBJ", "subprocess.Popen", newPickle().global("subprocess", "Popen").str("id").op(opTuple1, opNewObj).bytes()},
		{"getattr", "builtins.getattr", newPickle().global("builtins", "getattr").bytes()},
		{"torch.load", "torch.load", newPickle().global("torch", "load").bytes()},
		{"torch storage _load_from_bytes", "torch.storage._load_from_bytes", newPickle().global("torch.storage", "_load_from_bytes").bytes()},
		{"lookalike module", "torch._utilsx._rebuild_tensor_v2", newPickle().global("torch._utilsx", "_rebuild_tensor_v2").bytes()},
		{"storage in wrong module", "os.FloatStorage", newPickle().global("os", "FloatStorage").bytes()},
		{"hidden inside a state dict", "os.system", stateDict([]string{"w"}, func(p *pk, _ string) {
			p.global("os", "system").str("id").op(opTuple1, opReduce)
		})},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := runPickle(c.data)
			if !errors.Is(err, ErrUnsafePickle) || !strings.Contains(err.Error(), `global "`+c.global+`" is not allowed`) {
				t.Fatalf("error %v: want ErrUnsafePickle naming %s", err, c.global)
			}
			if !strings.Contains(err.Error(), "GLOBAL") { // refused at the GLOBAL / STACK_GLOBAL, before any call
				t.Fatalf("error %v: not refused at the global", err)
			}
		})
	}
}

func TestPickleLimits(t *testing.T) {
	// Deeply nested MARKs.
	deep := []byte{opProto, 2}
	for range maxPickleMarks + 1 {
		deep = append(deep, opMark)
	}
	if _, err := runPickle(append(deep, opStop)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "nested MARKs") {
		t.Errorf("marks: %v", err)
	}
	// A list of maxPickleContainer+1 items (DUP costs one byte per item).
	big := []byte{opProto, 2, opEmptyList, opMark, opNone}
	for range maxPickleContainer {
		big = append(big, opDup)
	}
	big = append(big, opAppends, opStop)
	if _, err := runPickle(big); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "items") {
		t.Errorf("container: %v", err)
	}
	// Memo limit: distinct LONG_BINPUT indices.
	memo := []byte{opProto, 2, opNone}
	for i := range maxPickleMemo + 1 {
		memo = append(memo, opLongBinPut)
		memo = binary.LittleEndian.AppendUint32(memo, uint32(i))
	}
	if _, err := runPickle(append(memo, opStop)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "memo holds") {
		t.Errorf("memo: %v", err)
	}
	// Stack limit.
	stack := []byte{opProto, 2}
	for range maxPickleStack + 1 {
		stack = append(stack, opNone)
	}
	if _, err := runPickle(append(stack, opStop)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "stack holds") {
		t.Errorf("stack: %v", err)
	}
}

func TestDecodeLong(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want int64
		ok   bool
	}{
		{nil, 0, true}, {[]byte{0x80}, -128, true}, {[]byte{0x00, 0x80}, -32768, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 1<<63 - 1, true},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 0x80}, -1 << 63, true},
		{[]byte{0, 0, 0, 0, 0, 0, 0, 0x80, 0}, 0, false}, // 2^63
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, -1, true},
	} {
		got, ok := decodeLong(c.b)
		if got != c.want || ok != c.ok {
			t.Errorf("decodeLong(%x) = %d, %v; want %d, %v", c.b, got, ok, c.want, c.ok)
		}
	}
}
