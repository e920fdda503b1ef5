package checkpoint

import "fmt"

// The globals a torch state dict pickle may name, and what each builds. Everything else is refused
// by torchGlobal before the pickle runs any further.

// storageTypes maps torch's legacy typed-storage class names, which torch.save still writes into
// persistent ids, to dtypes. UntypedStorage is read as bytes, as torch.load does.
var storageTypes = map[string]DType{
	"DoubleStorage":   F64,
	"FloatStorage":    F32,
	"HalfStorage":     F16,
	"BFloat16Storage": BF16,
	"LongStorage":     I64,
	"IntStorage":      I32,
	"ShortStorage":    I16,
	"CharStorage":     I8,
	"ByteStorage":     U8,
	"BoolStorage":     BOOL,
	"UntypedStorage":  U8,
}

// torchGlobal resolves a GLOBAL / STACK_GLOBAL of a torch checkpoint pickle.
func torchGlobal(module, name string) (any, error) {
	switch module + "." + name {
	case "collections.OrderedDict":
		return orderedDictClass{}, nil
	case "torch._utils._rebuild_tensor_v2":
		return rebuildTensorV2{}, nil
	case "torch._utils._rebuild_parameter":
		return rebuildParameter{withState: false}, nil
	case "torch._utils._rebuild_parameter_with_state":
		return rebuildParameter{withState: true}, nil
	case "torch.storage.UntypedStorage":
		return storageType{name: "torch.storage.UntypedStorage", dtype: U8}, nil
	}
	if module == "torch" {
		if dt, ok := storageTypes[name]; ok {
			return storageType{name: "torch." + name, dtype: dt}, nil
		}
	}
	return nil, fmt.Errorf("global %q is not allowed (only collections.OrderedDict, torch._utils._rebuild_tensor_v2, "+
		"torch._utils._rebuild_parameter[_with_state] and torch storage types are)", module+"."+name)
}

// orderedDictClass is collections.OrderedDict: called or instantiated without arguments, it is an
// empty dict.
type orderedDictClass struct{}

func (orderedDictClass) pyName() string { return "collections.OrderedDict" }

func (orderedDictClass) call(args pyTuple) (any, error) {
	if len(args) != 0 {
		return nil, fmt.Errorf("takes no arguments here, got %d", len(args))
	}
	return newDict(), nil
}

func (c orderedDictClass) newObj(args pyTuple) (any, error) { return c.call(args) }

// storageType is a torch storage class; it only appears inside persistent ids.
type storageType struct {
	name  string
	dtype DType
}

func (s storageType) pyName() string { return s.name }

// rebuildTensorV2 is torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
// requires_grad, backward_hooks[, metadata]).
type rebuildTensorV2 struct{}

func (rebuildTensorV2) pyName() string { return "torch._utils._rebuild_tensor_v2" }

func (rebuildTensorV2) call(args pyTuple) (any, error) {
	if len(args) != 6 && len(args) != 7 {
		return nil, fmt.Errorf("takes 6 or 7 arguments, got %d", len(args))
	}
	storage, ok := args[0].(*storageRef)
	if !ok {
		return nil, fmt.Errorf("storage is a %s", pyTypeName(args[0]))
	}
	offset, ok := args[1].(int64)
	if !ok || offset < 0 {
		return nil, fmt.Errorf("storage_offset is not a non-negative int")
	}
	shape, err := intTuple(args[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(args[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(shape) != len(stride) {
		return nil, fmt.Errorf("size has %d dimensions but stride has %d", len(shape), len(stride))
	}
	if _, ok := args[4].(bool); !ok {
		return nil, fmt.Errorf("requires_grad is a %s, not a bool", pyTypeName(args[4]))
	}
	// backward_hooks (an empty OrderedDict in practice: any hook would be a refused global) and the
	// optional metadata dict carry nothing needed to read the tensor.
	for _, a := range args[5:] {
		switch a.(type) {
		case *pyDict, nil:
		default:
			return nil, fmt.Errorf("backward_hooks or metadata is a %s, not a dict", pyTypeName(a))
		}
	}
	return &tensorRef{storage: storage, offset: offset, shape: shape, stride: stride}, nil
}

// intTuple converts a tuple of non-negative ints with at most maxTensorDims entries.
func intTuple(v any, what string) ([]int64, error) {
	t, ok := v.(pyTuple)
	if !ok {
		return nil, fmt.Errorf("%s is a %s, not a tuple", what, pyTypeName(v))
	}
	if len(t) > maxTensorDims {
		return nil, fmt.Errorf("%s has %d dimensions, more than %d", what, len(t), maxTensorDims)
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("%s[%d] is not a non-negative int", what, i)
		}
		out[i] = n
	}
	return out, nil
}

// rebuildParameter is torch._utils._rebuild_parameter(data, requires_grad, backward_hooks) and
// _rebuild_parameter_with_state(..., state): the parameter is read as its tensor.
type rebuildParameter struct{ withState bool }

func (r rebuildParameter) pyName() string {
	if r.withState {
		return "torch._utils._rebuild_parameter_with_state"
	}
	return "torch._utils._rebuild_parameter"
}

func (r rebuildParameter) call(args pyTuple) (any, error) {
	want := 3
	if r.withState {
		want = 4
	}
	if len(args) != want {
		return nil, fmt.Errorf("takes %d arguments, got %d", want, len(args))
	}
	t, ok := args[0].(*tensorRef)
	if !ok {
		return nil, fmt.Errorf("data is a %s, not a tensor", pyTypeName(args[0]))
	}
	if _, ok := args[1].(bool); !ok {
		return nil, fmt.Errorf("requires_grad is a %s, not a bool", pyTypeName(args[1]))
	}
	return t, nil
}
