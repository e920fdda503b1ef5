package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// This file is a restricted pickle interpreter: it knows the opcodes torch.save emits (protocol 2,
// plus the harmless protocol 3-4 additions) and builds plain Go values from them. It never imports or
// calls anything: globals are resolved by a caller-supplied function that only knows a fixed allow
// list, and the only calls it performs are to the values that function returned.

// Limits on what a pickle may make the interpreter allocate. Every string and byte length is also
// checked against the bytes that remain in the pickle before anything is allocated.
const (
	maxPickleStack     = 1 << 20   // values on the stack
	maxPickleMarks     = 1 << 16   // open MARKs
	maxPickleMemo      = 1 << 20   // memo entries
	maxPickleContainer = 1_000_000 // items in one list, tuple or dict
	maxTensorDims      = 64        // dimensions of one tensor view
)

// Pickle opcodes (names as in CPython's pickletools).
const (
	opMark            = '('
	opStop            = '.'
	opPop             = '0'
	opPopMark         = '1'
	opDup             = '2'
	opFloat           = 'F'
	opInt             = 'I'
	opBinInt          = 'J'
	opBinInt1         = 'K'
	opLong            = 'L'
	opBinInt2         = 'M'
	opNone            = 'N'
	opPersID          = 'P'
	opBinPersID       = 'Q'
	opReduce          = 'R'
	opString          = 'S'
	opBinString       = 'T'
	opShortBinString  = 'U'
	opUnicode         = 'V'
	opBinUnicode      = 'X'
	opAppend          = 'a'
	opBuild           = 'b'
	opGlobal          = 'c'
	opDict            = 'd'
	opEmptyDict       = '}'
	opAppends         = 'e'
	opGet             = 'g'
	opBinGet          = 'h'
	opInst            = 'i'
	opLongBinGet      = 'j'
	opList            = 'l'
	opEmptyList       = ']'
	opObj             = 'o'
	opPut             = 'p'
	opBinPut          = 'q'
	opLongBinPut      = 'r'
	opSetItem         = 's'
	opTuple           = 't'
	opEmptyTuple      = ')'
	opSetItems        = 'u'
	opBinFloat        = 'G'
	opProto           = 0x80
	opNewObj          = 0x81
	opExt1            = 0x82
	opExt2            = 0x83
	opExt4            = 0x84
	opTuple1          = 0x85
	opTuple2          = 0x86
	opTuple3          = 0x87
	opNewTrue         = 0x88
	opNewFalse        = 0x89
	opLong1           = 0x8a
	opLong4           = 0x8b
	opBinBytes        = 'B'
	opShortBinBytes   = 'C'
	opShortBinUnicode = 0x8c
	opBinUnicode8     = 0x8d
	opBinBytes8       = 0x8e
	opEmptySet        = 0x8f
	opAddItems        = 0x90
	opFrozenSet       = 0x91
	opNewObjEx        = 0x92
	opStackGlobal     = 0x93
	opMemoize         = 0x94
	opFrame           = 0x95
	opByteArray8      = 0x96
	opNextBuffer      = 0x97
	opReadonlyBuffer  = 0x98
)

var opNames = map[byte]string{
	opMark: "MARK", opStop: "STOP", opPop: "POP", opPopMark: "POP_MARK", opDup: "DUP", opFloat: "FLOAT",
	opInt: "INT", opBinInt: "BININT", opBinInt1: "BININT1", opLong: "LONG", opBinInt2: "BININT2",
	opNone: "NONE", opPersID: "PERSID", opBinPersID: "BINPERSID", opReduce: "REDUCE", opString: "STRING",
	opBinString: "BINSTRING", opShortBinString: "SHORT_BINSTRING", opUnicode: "UNICODE",
	opBinUnicode: "BINUNICODE", opAppend: "APPEND", opBuild: "BUILD", opGlobal: "GLOBAL", opDict: "DICT",
	opEmptyDict: "EMPTY_DICT", opAppends: "APPENDS", opGet: "GET", opBinGet: "BINGET", opInst: "INST",
	opLongBinGet: "LONG_BINGET", opList: "LIST", opEmptyList: "EMPTY_LIST", opObj: "OBJ", opPut: "PUT",
	opBinPut: "BINPUT", opLongBinPut: "LONG_BINPUT", opSetItem: "SETITEM", opTuple: "TUPLE",
	opEmptyTuple: "EMPTY_TUPLE", opSetItems: "SETITEMS", opBinFloat: "BINFLOAT", opProto: "PROTO",
	opNewObj: "NEWOBJ", opExt1: "EXT1", opExt2: "EXT2", opExt4: "EXT4", opTuple1: "TUPLE1",
	opTuple2: "TUPLE2", opTuple3: "TUPLE3", opNewTrue: "NEWTRUE", opNewFalse: "NEWFALSE", opLong1: "LONG1",
	opLong4: "LONG4", opBinBytes: "BINBYTES", opShortBinBytes: "SHORT_BINBYTES",
	opShortBinUnicode: "SHORT_BINUNICODE", opBinUnicode8: "BINUNICODE8", opBinBytes8: "BINBYTES8",
	opEmptySet: "EMPTY_SET", opAddItems: "ADDITEMS", opFrozenSet: "FROZENSET", opNewObjEx: "NEWOBJ_EX",
	opStackGlobal: "STACK_GLOBAL", opMemoize: "MEMOIZE", opFrame: "FRAME", opByteArray8: "BYTEARRAY8",
	opNextBuffer: "NEXT_BUFFER", opReadonlyBuffer: "READONLY_BUFFER",
}

// Python values as the interpreter builds them. str is string, int is int64, float is float64,
// bool is bool, None is nil, bytes is []byte.
type (
	pyTuple []any
	pyList  struct{ items []any }
	pyDict  struct {
		keys  []any
		vals  []any
		index map[any]int
	}
)

// pyCallable is a global the interpreter may call with REDUCE.
type pyCallable interface {
	pyName() string
	call(args pyTuple) (any, error)
}

// pyClass is a global the interpreter may instantiate with NEWOBJ.
type pyClass interface {
	pyName() string
	newObj(args pyTuple) (any, error)
}

func newDict() *pyDict { return &pyDict{index: make(map[any]int)} }

// set stores d[k] = v, keeping insertion order. Only scalar keys are accepted (they are what a state
// dict uses, and they are comparable in Go).
func (d *pyDict) set(k, v any) error {
	switch k.(type) {
	case string, int64, bool, float64, nil:
	default:
		return fmt.Errorf("dict key of type %s is not supported", pyTypeName(k))
	}
	if i, ok := d.index[k]; ok {
		d.vals[i] = v
		return nil
	}
	if len(d.keys) >= maxPickleContainer {
		return fmt.Errorf("dict has more than %d items", maxPickleContainer)
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// pyTypeName names the Python type of v for error messages (never recursing into v).
func pyTypeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case string:
		return "str"
	case int64:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case []byte:
		return "bytes"
	case pyTuple:
		return "tuple"
	case *pyList:
		return "list"
	case *pyDict:
		return "dict"
	case interface{ pyName() string }: // globals, storages, tensors
		return v.pyName()
	}
	return fmt.Sprintf("%T", v)
}

// unpickler runs one pickle.
type unpickler struct {
	data  []byte
	pos   int
	op    byte // opcode being run, for errors
	start int  // its offset
	stack []any
	marks []int // stack lengths at each open MARK
	memo  map[uint32]any

	// findGlobal resolves GLOBAL / STACK_GLOBAL; it must refuse anything not allowed.
	findGlobal func(module, name string) (any, error)
	// persistentLoad resolves BINPERSID; nil refuses persistent ids.
	persistentLoad func(pid any) (any, error)
}

// fail returns an error for the current opcode that wraps kind.
func (u *unpickler) fail(kind error, format string, args ...any) error {
	name, ok := opNames[u.op]
	if !ok {
		name = fmt.Sprintf("0x%02x", u.op)
	}
	return fmt.Errorf("pickle offset %d: %s: %w: %s", u.start, name, kind, fmt.Sprintf(format, args...))
}

func (u *unpickler) read(n uint64) ([]byte, error) {
	if n > uint64(len(u.data)-u.pos) {
		return nil, u.fail(ErrFormat, "needs %d bytes but only %d remain", n, len(u.data)-u.pos)
	}
	b := u.data[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, nil
}

func (u *unpickler) readUint(size int) (uint64, error) {
	b, err := u.read(uint64(size))
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := size - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

func (u *unpickler) readLine() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:], '\n')
	if i < 0 {
		return "", u.fail(ErrFormat, "missing newline")
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

func (u *unpickler) floor() int {
	if len(u.marks) == 0 {
		return 0
	}
	return u.marks[len(u.marks)-1]
}

func (u *unpickler) push(v any) error {
	if len(u.stack) >= maxPickleStack {
		return u.fail(ErrFormat, "stack holds more than %d values", maxPickleStack)
	}
	u.stack = append(u.stack, v)
	return nil
}

func (u *unpickler) pop() (any, error) {
	if len(u.stack) <= u.floor() {
		return nil, u.fail(ErrFormat, "stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack[len(u.stack)-1] = nil
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

func (u *unpickler) top() (any, error) {
	if len(u.stack) <= u.floor() {
		return nil, u.fail(ErrFormat, "stack underflow")
	}
	return u.stack[len(u.stack)-1], nil
}

// popMark removes and returns (a copy of) the values above the innermost MARK.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, u.fail(ErrFormat, "no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	clear(u.stack[m:])
	u.stack = u.stack[:m]
	if len(items) > maxPickleContainer {
		return nil, u.fail(ErrFormat, "more than %d items after MARK", maxPickleContainer)
	}
	return items, nil
}

func (u *unpickler) popN(n int) ([]any, error) {
	if len(u.stack)-u.floor() < n {
		return nil, u.fail(ErrFormat, "stack underflow")
	}
	items := append([]any(nil), u.stack[len(u.stack)-n:]...)
	clear(u.stack[len(u.stack)-n:])
	u.stack = u.stack[:len(u.stack)-n]
	return items, nil
}

func (u *unpickler) memoPut(idx uint32) error {
	v, err := u.top()
	if err != nil {
		return err
	}
	if _, ok := u.memo[idx]; !ok && len(u.memo) >= maxPickleMemo {
		return u.fail(ErrFormat, "memo holds more than %d values", maxPickleMemo)
	}
	u.memo[idx] = v
	return nil
}

func (u *unpickler) memoGet(idx uint32) error {
	v, ok := u.memo[idx]
	if !ok {
		return u.fail(ErrFormat, "memo index %d was never stored", idx)
	}
	return u.push(v)
}

// decodeLong decodes a little-endian two's-complement integer, which must fit in an int64.
func decodeLong(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, true
	}
	if len(b) > 8 {
		ext := byte(0)
		if b[7]&0x80 != 0 {
			ext = 0xff
		}
		for _, c := range b[8:] {
			if c != ext {
				return 0, false
			}
		}
		b = b[:8]
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if len(b) < 8 { // sign-extend
		shift := 64 - 8*uint(len(b))
		return int64(v<<shift) >> shift, true
	}
	return int64(v), true
}

// load runs the pickle to its STOP and returns the value it produced.
func (u *unpickler) load() (any, error) {
	if u.memo == nil {
		u.memo = make(map[uint32]any)
	}
	for {
		if u.pos >= len(u.data) {
			return nil, fmt.Errorf("pickle offset %d: %w: pickle ends without STOP", u.pos, ErrFormat)
		}
		u.start, u.op = u.pos, u.data[u.pos]
		u.pos++
		if err := u.step(); err != nil {
			if err == errStop {
				return u.pop()
			}
			return nil, err
		}
	}
}

// errStop is step's signal that STOP was reached.
var errStop = errors.New("STOP")

// step runs the opcode u.op whose byte has just been consumed.
func (u *unpickler) step() error {
	switch u.op {
	case opStop:
		return errStop
	case opProto:
		v, err := u.readUint(1)
		if err != nil {
			return err
		}
		if v > 5 {
			return u.fail(ErrFormat, "unknown protocol %d", v)
		}
	case opFrame:
		n, err := u.readUint(8)
		if err != nil {
			return err
		}
		if n > uint64(len(u.data)-u.pos) {
			return u.fail(ErrFormat, "frame of %d bytes but only %d remain", n, len(u.data)-u.pos)
		}
	case opMark:
		if len(u.marks) >= maxPickleMarks {
			return u.fail(ErrFormat, "more than %d nested MARKs", maxPickleMarks)
		}
		u.marks = append(u.marks, len(u.stack))
	case opPop:
		if len(u.stack) > u.floor() {
			_, err := u.pop()
			return err
		}
		_, err := u.popMark()
		return err
	case opPopMark:
		_, err := u.popMark()
		return err
	case opDup:
		v, err := u.top()
		if err != nil {
			return err
		}
		return u.push(v)

	case opNone:
		return u.push(nil)
	case opNewTrue:
		return u.push(true)
	case opNewFalse:
		return u.push(false)
	case opBinInt:
		v, err := u.readUint(4)
		if err != nil {
			return err
		}
		return u.push(int64(int32(uint32(v))))
	case opBinInt1:
		v, err := u.readUint(1)
		if err != nil {
			return err
		}
		return u.push(int64(v))
	case opBinInt2:
		v, err := u.readUint(2)
		if err != nil {
			return err
		}
		return u.push(int64(v))
	case opLong1, opLong4:
		var n uint64
		var err error
		if u.op == opLong1 {
			n, err = u.readUint(1)
		} else {
			n, err = u.readUint(4)
			if err == nil && int32(uint32(n)) < 0 {
				return u.fail(ErrFormat, "negative length")
			}
		}
		if err != nil {
			return err
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		v, ok := decodeLong(b)
		if !ok {
			return u.fail(ErrFormat, "integer of %d bytes does not fit in 64 bits", n)
		}
		return u.push(v)
	case opBinFloat:
		b, err := u.read(8)
		if err != nil {
			return err
		}
		return u.push(math.Float64frombits(binary.BigEndian.Uint64(b)))

	case opShortBinUnicode, opBinUnicode, opBinUnicode8, opShortBinString, opBinString,
		opShortBinBytes, opBinBytes, opBinBytes8:
		n, err := u.readUint(lengthSize(u.op))
		if err != nil {
			return err
		}
		if u.op == opBinString && int32(uint32(n)) < 0 {
			return u.fail(ErrFormat, "negative length")
		}
		b, err := u.read(n)
		if err != nil {
			return err
		}
		switch u.op {
		case opShortBinBytes, opBinBytes, opBinBytes8:
			return u.push(bytes.Clone(b))
		}
		return u.push(string(b))

	case opEmptyTuple:
		return u.push(pyTuple{})
	case opTuple1, opTuple2, opTuple3:
		items, err := u.popN(int(u.op-opTuple1) + 1)
		if err != nil {
			return err
		}
		return u.push(pyTuple(items))
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(pyTuple(items))
	case opEmptyList:
		return u.push(&pyList{})
	case opList:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.push(&pyList{items: items})
	case opEmptyDict:
		return u.push(newDict())
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		d := newDict()
		if err := u.setItems(d, items); err != nil {
			return err
		}
		return u.push(d)
	case opAppend:
		v, err := u.pop()
		if err != nil {
			return err
		}
		return u.appendTo([]any{v})
	case opAppends:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.appendTo(items)
	case opSetItem:
		kv, err := u.popN(2)
		if err != nil {
			return err
		}
		return u.setItemsOnTop(kv)
	case opSetItems:
		items, err := u.popMark()
		if err != nil {
			return err
		}
		return u.setItemsOnTop(items)

	case opBinPut:
		idx, err := u.readUint(1)
		if err != nil {
			return err
		}
		return u.memoPut(uint32(idx))
	case opLongBinPut:
		idx, err := u.readUint(4)
		if err != nil {
			return err
		}
		return u.memoPut(uint32(idx))
	case opMemoize:
		return u.memoPut(uint32(len(u.memo)))
	case opBinGet:
		idx, err := u.readUint(1)
		if err != nil {
			return err
		}
		return u.memoGet(uint32(idx))
	case opLongBinGet:
		idx, err := u.readUint(4)
		if err != nil {
			return err
		}
		return u.memoGet(uint32(idx))

	case opGlobal:
		module, err := u.readLine()
		if err != nil {
			return err
		}
		name, err := u.readLine()
		if err != nil {
			return err
		}
		return u.global(module, name)
	case opStackGlobal:
		mn, err := u.popN(2)
		if err != nil {
			return err
		}
		module, ok1 := mn[0].(string)
		name, ok2 := mn[1].(string)
		if !ok1 || !ok2 {
			return u.fail(ErrFormat, "module and name must be str, got %s and %s", pyTypeName(mn[0]), pyTypeName(mn[1]))
		}
		return u.global(module, name)
	case opReduce:
		fa, err := u.popN(2)
		if err != nil {
			return err
		}
		args, ok := fa[1].(pyTuple)
		if !ok {
			return u.fail(ErrFormat, "arguments are a %s, not a tuple", pyTypeName(fa[1]))
		}
		fn, ok := fa[0].(pyCallable)
		if !ok {
			return u.fail(ErrUnsafePickle, "%s is not callable", pyTypeName(fa[0]))
		}
		v, err := fn.call(args)
		if err != nil {
			return u.fail(ErrFormat, "%s: %v", fn.pyName(), err)
		}
		return u.push(v)
	case opNewObj:
		ca, err := u.popN(2)
		if err != nil {
			return err
		}
		args, ok := ca[1].(pyTuple)
		if !ok {
			return u.fail(ErrFormat, "arguments are a %s, not a tuple", pyTypeName(ca[1]))
		}
		cls, ok := ca[0].(pyClass)
		if !ok {
			return u.fail(ErrUnsafePickle, "%s cannot be instantiated", pyTypeName(ca[0]))
		}
		v, err := cls.newObj(args)
		if err != nil {
			return u.fail(ErrFormat, "%s: %v", cls.pyName(), err)
		}
		return u.push(v)
	case opBuild:
		state, err := u.pop()
		if err != nil {
			return err
		}
		inst, err := u.top()
		if err != nil {
			return err
		}
		// Only a dict's instance attributes may be set (OrderedDict state dicts carry _metadata);
		// the attributes are not needed and are dropped.
		if _, ok := inst.(*pyDict); !ok {
			return u.fail(ErrUnsafePickle, "cannot set the state of a %s", pyTypeName(inst))
		}
		switch state.(type) {
		case *pyDict, nil:
		default:
			return u.fail(ErrFormat, "state is a %s, not a dict", pyTypeName(state))
		}
	case opBinPersID:
		pid, err := u.pop()
		if err != nil {
			return err
		}
		if u.persistentLoad == nil {
			return u.fail(ErrUnsafePickle, "persistent ids are not allowed here")
		}
		v, err := u.persistentLoad(pid)
		if err != nil {
			return u.fail(ErrFormat, "%v", err)
		}
		return u.push(v)

	default:
		if name, ok := opNames[u.op]; ok {
			return u.fail(ErrUnsafePickle, "opcode %s is not allowed in a torch checkpoint", name)
		}
		return u.fail(ErrFormat, "invalid opcode byte 0x%02x", u.op)
	}
	return nil
}

// lengthSize is the size in bytes of the length prefix of a string or bytes opcode.
func lengthSize(op byte) int {
	switch op {
	case opShortBinUnicode, opShortBinString, opShortBinBytes:
		return 1
	case opBinUnicode8, opBinBytes8:
		return 8
	}
	return 4
}

func (u *unpickler) global(module, name string) error {
	v, err := u.findGlobal(module, name)
	if err != nil {
		return u.fail(ErrUnsafePickle, "%v", err)
	}
	return u.push(v)
}

func (u *unpickler) appendTo(items []any) error {
	target, err := u.top()
	if err != nil {
		return err
	}
	l, ok := target.(*pyList)
	if !ok {
		return u.fail(ErrUnsafePickle, "cannot append to a %s", pyTypeName(target))
	}
	if len(items) > maxPickleContainer-len(l.items) {
		return u.fail(ErrFormat, "list has more than %d items", maxPickleContainer)
	}
	l.items = append(l.items, items...)
	return nil
}

func (u *unpickler) setItemsOnTop(items []any) error {
	target, err := u.top()
	if err != nil {
		return err
	}
	d, ok := target.(*pyDict)
	if !ok {
		return u.fail(ErrUnsafePickle, "cannot set items of a %s", pyTypeName(target))
	}
	return u.setItems(d, items)
}

func (u *unpickler) setItems(d *pyDict, items []any) error {
	if len(items)%2 != 0 {
		return u.fail(ErrFormat, "odd number of items (%d) for key/value pairs", len(items))
	}
	for i := 0; i < len(items); i += 2 {
		if err := d.set(items[i], items[i+1]); err != nil {
			return u.fail(ErrFormat, "%v", err)
		}
	}
	return nil
}
