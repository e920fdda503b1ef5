package clip

import (
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/gotchutil"
)

// ErrCheckpoint wraps every error of the loaders: a checkpoint whose keys, shapes, dtypes or values
// do not fit the model. The root package's ErrCheckpoint is this value.
var ErrCheckpoint = errors.New("safety: bad checkpoint")

// Loading says where and how a loader puts the weights, and counts what it did.
//
// A weight is a view of the checkpoint's memory mapping (gotchutil.ViewCPU, no copy) when Map is set,
// Device is the CPU, Hold is set, the checkpoint can be retained ([checkpoint.Retainer]: a safetensors
// file), the tensor's file dtype is DType and its data is element-aligned; every other weight (a torch
// zip, a float16 file computed in float32, CUDA, a misaligned tensor) is copied, as is every part of a
// group that is not all viewable. Either way every element is checked for NaN and ±Inf.
type Loading struct {
	Device gotch.Device
	DType  gotch.DType // compute dtype
	SDPA   bool        // attention uses scaled_dot_product_attention
	Map    bool        // view weights in the mapping where allowed
	// Hold receives, before the first view is made, the release of the retained mapping
	// (checkpoint.File.Retain): the caller must call it after dropping every tensor recorded on the
	// loader's tape, on the same thread (the rule of gotchutil.ViewCPU) — whether the load
	// succeeded or not. With Hold nil nothing is mapped.
	Hold func(release func() error)

	// MappedBytes and CopiedBytes count the bytes of the weights loaded, viewed in the mapping
	// and copied onto Device.
	MappedBytes, CopiedBytes int64

	retained bool // the mapping has been retained (and handed to Hold)
}

// LoadVision finds the vision tower in ck (nested or flat prefix), validates its keys and shapes
// against cfg — together with extra, the keys and shapes of what the caller reads itself (the safety
// checker's concept head), so that one error lists every problem — and loads its weights one tensor
// at a time as l says (views of the mapping, or copies onto l.Device in l.DType, so that peak host
// memory stays near one copy of the weights), bound to the tower as its spec says. Tensors it creates
// are recorded on t.
func LoadVision(t *gotchutil.Tape, ck checkpoint.Checkpoint, cfg Config, l *Loading,
	extra map[string][]int64) (*VisionTransformer, error) {
	prefix := VisionPrefix
	if _, nested := ck.Info(VisionPrefix + "embeddings.class_embedding"); !nested {
		if _, flat := ck.Info(FlatVisionPrefix + "embeddings.class_embedding"); flat {
			prefix = FlatVisionPrefix
		}
	}
	if err := checkLayerCount(ck, prefix, cfg.Vision.NumHiddenLayers); err != nil {
		return nil, err
	}
	v, spec := newVision(cfg, prefix, l.SDPA)
	belongs := func(name string) bool { return !ignoredVisionKeys[name] }
	if err := keysError(ck, checkKeys(ck, belongs, Keys(spec.Params()), extra)); err != nil {
		return nil, err
	}
	if err := load(t, ck, spec.Params(), l); err != nil {
		return nil, err
	}
	return v, nil
}

// ignoredVisionKeys are buffers the published checkpoints carry and the model does not use.
var ignoredVisionKeys = map[string]bool{
	VisionPrefix + "embeddings.position_ids":     true,
	FlatVisionPrefix + "embeddings.position_ids": true,
}

// LoadText finds the text tower in ck, validates its keys and shapes against cfg and loads it one
// tensor at a time as l says (see [LoadVision]), bound to the tower as its spec says, recording the
// tensors on t. It returns the tower and whether the checkpoint has a text projection [P, D]
// (P = cfg.ProjectionDim).
func LoadText(t *gotchutil.Tape, ck checkpoint.Checkpoint, cfg TextModelConfig, l *Loading) (*TextTransformer, bool, error) {
	var prefix string
	switch {
	case has(ck, TextPrefix+"embeddings.token_embedding.weight"):
		prefix = TextPrefix
	case has(ck, BareTextPrefix+"embeddings.token_embedding.weight"):
		prefix = BareTextPrefix
	case has(ck, VisionPrefix+"embeddings.class_embedding") || has(ck, "concept_embeds"):
		return nil, false, fmt.Errorf("%w: %s holds a safety checker (vision tower and concepts only), not a CLIP "+
			"text tower; load the CLIP model it comes from (openai/clip-vit-large-patch14)", ErrCheckpoint, ck.Path())
	default:
		return nil, false, fmt.Errorf("%w: %s: no CLIP text tower (no %q)", ErrCheckpoint, ck.Path(),
			TextPrefix+"embeddings.token_embedding.weight")
	}
	if err := checkLayerCount(ck, prefix, cfg.Text.NumHiddenLayers); err != nil {
		return nil, false, err
	}
	projDim := 0
	if _, projected := ck.Info(KeyTextProjection); projected {
		projDim = cfg.ProjectionDim
	}
	m, spec := newText(cfg.Text, prefix, projDim, l.SDPA, l.Device)
	belongs := func(name string) bool { return isTextKey(name, prefix) && name != prefix+"embeddings.position_ids" }
	if err := keysError(ck, checkKeys(ck, belongs, Keys(spec.Params()))); err != nil {
		return nil, false, err
	}
	if err := load(t, ck, spec.Params(), l); err != nil {
		return nil, false, err
	}
	return m, projDim > 0, nil
}

func has(ck checkpoint.Checkpoint, name string) bool {
	_, ok := ck.Info(name)
	return ok
}

// load binds each parameter to its field, as a view of the mapping where l allows it for all of the
// parameter's parts (viewable), else as a copy (loadGroup) on l.Device in l.DType; tensors are recorded
// on t. After a nil error every field the spec named holds its weight.
func load(t *gotchutil.Tape, ck checkpoint.Checkpoint, params []Param, l *Loading) error {
	for _, p := range params {
		data, err := l.viewable(ck, p.Group)
		if err != nil {
			return err
		}
		if data != nil {
			if err := l.bindViews(t, p, data); err != nil {
				return err
			}
			continue
		}
		x, err := loadGroup(ck, p.Group, l.Device, l.DType)
		if err != nil {
			return err
		}
		t.Record(p.Key, x, nil)
		n := int64(l.DType.Size())
		for _, d := range p.Shape {
			n *= d
		}
		l.CopiedBytes += n
		if p.Stack != nil {
			p.Stack.all = x
		} else {
			*p.Dst = x
		}
	}
	return nil
}

// viewable returns the data of g's parts in the mapping, scanned for NaN and ±Inf, when every part
// may be viewed (see [Loading]), retaining the mapping (and handing its release to l.Hold) the first
// time; nil data (and no error) means g is to be copied.
func (l *Loading) viewable(ck checkpoint.Checkpoint, g Group) ([][]byte, error) {
	r, ok := ck.(checkpoint.Retainer)
	if !l.Map || l.Device != gotch.CPU || l.Hold == nil || !ok {
		return nil, nil
	}
	tns := make([]checkpoint.Tensor, len(g.Parts))
	for i, name := range g.Parts {
		tn, err := GuardedTensor(ck, name)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
		if src, err := torchDType(tn.DType); err != nil || src != l.DType || !tn.Aligned(tn.DType.Size()) {
			return nil, nil
		}
		tns[i] = tn
	}
	if err := scanChecked(ck, tns, nil); err != nil {
		return nil, unwrapLoad(err)
	}
	if !l.retained {
		release, err := r.Retain()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
		l.retained = true
		l.Hold(release)
	}
	data := make([][]byte, len(tns))
	for i, tn := range tns {
		data[i] = tn.Data
	}
	return data, nil
}

// bindViews binds p to the parts' data in the mapping: a single tensor as a view made now (recorded on
// t), a per-layer weight as the layers' data, viewed per forward ([Stacked]).
func (l *Loading) bindViews(t *gotchutil.Tape, p Param, data [][]byte) error {
	for _, b := range data {
		l.MappedBytes += int64(len(b))
	}
	if p.Stack != nil {
		if int64(len(data)) != p.Shape[0] {
			return fmt.Errorf("%w: %s: %d layers of data for %d layers", ErrCheckpoint, p.Key, len(data), p.Shape[0])
		}
		*p.Stack = Stacked{layers: data, shape: p.PartShape, dtype: l.DType}
		return nil
	}
	if len(data) != 1 {
		return fmt.Errorf("%w: %s: %d parts viewed as one tensor", ErrCheckpoint, p.Key, len(data))
	}
	x, err := gotchutil.ViewCPU(nil, data[0], l.DType, p.Shape...)
	if x = t.Record("view "+p.Key, x, err); x == nil {
		return fmt.Errorf("%w: %s: %v", ErrCheckpoint, p.Key, t.Err())
	}
	*p.Dst = x
	return nil
}

// checkKeys compares ck with the wanted keys and shapes (each map in turn, keys in sorted order):
// every wanted tensor must be there with its shape and a float dtype, and every tensor of ck that
// belongs to the model (belongs(name)) and is not wanted is unexpected. It returns the problems found.
func checkKeys(ck checkpoint.Checkpoint, belongs func(name string) bool, want ...map[string][]int64) []string {
	var problems []string
	for _, name := range ck.Names() {
		wanted := false
		for _, m := range want {
			if _, ok := m[name]; ok {
				wanted = true
				break
			}
		}
		if !wanted && belongs(name) {
			problems = append(problems, fmt.Sprintf("unexpected tensor %q", name))
		}
	}
	for _, m := range want {
		for _, name := range slices.Sorted(maps.Keys(m)) {
			shape := m[name]
			info, ok := ck.Info(name)
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("missing tensor %q (want shape %v)", name, shape))
			case !slices.Equal(info.Shape, shape):
				problems = append(problems, fmt.Sprintf("tensor %q has shape %v, want %v", name, info.Shape, shape))
			case !info.DType.IsFloat():
				problems = append(problems, fmt.Sprintf("tensor %q has dtype %s, want a float type", name, info.DType))
			}
		}
	}
	return problems
}

// keysError is the ErrCheckpoint error listing problems (at most 8 of them, then a count), nil when
// there are none.
func keysError(ck checkpoint.Checkpoint, problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	if len(problems) > 8 {
		problems = append(problems[:8], fmt.Sprintf("and %d more", len(problems)-8))
	}
	return fmt.Errorf("%w: %s: %s", ErrCheckpoint, ck.Path(), strings.Join(problems, "; "))
}

// checkLayerCount compares the number of encoder layers config.json declares with the layers the
// checkpoint holds under prefix+"encoder.layers.N.", before any per-layer key is listed: a config
// declaring more layers than the checkpoint has is refused here with one line, not after listing
// every missing key of every layer. (A checkpoint with extra layers is left to the key check, which
// names the unexpected tensors.)
func checkLayerCount(ck checkpoint.Checkpoint, prefix string, declared int) error {
	layers := map[int]bool{}
	for _, name := range ck.Names() {
		rest, ok := strings.CutPrefix(name, prefix+"encoder.layers.")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if l, err := strconv.Atoi(num); err == nil && l >= 0 && strconv.Itoa(l) == num {
			layers[l] = true
		}
	}
	if len(layers) < declared { // more layers than declared: the key check names the unexpected tensors
		return fmt.Errorf("%w: %s: config.json declares %d encoder layers, the checkpoint holds %d (%sencoder.layers.N)",
			ErrCheckpoint, ck.Path(), declared, len(layers), prefix)
	}
	return nil
}

// loadGroup makes the tensor of g on device in dtype, refusing any NaN or Inf element. On the CPU in
// the checkpoint's dtype, the parts' bytes go straight from the checkpoint into the new tensor — a
// single copy, in parallel chunks that are checked as they are copied, after which the file's pages
// are released. Otherwise each part is staged in its own dtype and converted by libtorch into the
// group's CPU tensor (one part's staging at a time), which then moves to device.
func loadGroup(ck checkpoint.Checkpoint, g Group, device gotch.Device, dtype gotch.DType) (*ts.Tensor, error) {
	tns := make([]checkpoint.Tensor, len(g.Parts))
	direct := device == gotch.CPU
	for i, name := range g.Parts {
		tn, err := GuardedTensor(ck, name)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
		}
		src, err := torchDType(tn.DType)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: tensor %q: %v", ErrCheckpoint, ck.Path(), name, err)
		}
		direct = direct && src == dtype
		tns[i] = tn
	}
	var t gotchutil.Tape
	x, buf, err := gotchutil.EmptyCPU(dtype, g.Shape...)
	if x = t.Record("load "+g.Key, x, err); x != nil {
		if direct {
			t.Fail("load", scanChecked(ck, tns, buf))
		} else {
			off := 0
			for _, tn := range tns {
				n, err := convertPart(ck, tn, dtype, buf[off:])
				t.Fail("load", err)
				if err != nil {
					break
				}
				off += n
			}
			if t.Ok() && off != len(buf) {
				t.Fail("load", fmt.Errorf("%d bytes converted for a tensor of %d", off, len(buf)))
			}
		}
	}
	y := t.ToDevice(x, device, dtype)
	if err := t.Err(); err != nil {
		t.Release()
		return nil, unwrapLoad(err)
	}
	t.Release(y)
	return y, nil
}

// convertPart stages one checkpoint tensor in a CPU tensor of its own dtype (checking it), converts it
// to dtype and copies the result into dst; it returns the number of bytes written.
func convertPart(ck checkpoint.Checkpoint, tn checkpoint.Tensor, dtype gotch.DType, dst []byte) (int, error) {
	src, err := torchDType(tn.DType)
	if err != nil {
		return 0, err
	}
	numel := int64(len(tn.Data) / tn.DType.Size())
	if numel == 0 {
		return 0, nil
	}
	var t gotchutil.Tape
	defer t.Release()
	x, buf, err := gotchutil.EmptyCPU(src, numel)
	if x = t.Record("load "+tn.Name, x, err); x == nil {
		return 0, t.Err()
	}
	if err := scanChecked(ck, []checkpoint.Tensor{tn}, buf); err != nil {
		return 0, err
	}
	y := t.ToDType(x, dtype) // 1-D: contiguous
	if err := t.Err(); err != nil {
		return 0, err
	}
	b, err := gotchutil.HostBytes(y)
	if err != nil {
		return 0, err
	}
	// A finite value can overflow the narrower dtype (a float64 weight of 1e300 in float32, a float32
	// one of 1e5 in float16): check what was converted, not only what was read.
	to := checkpointDType(dtype)
	if i := checkpoint.FirstNonFinite(checkpoint.Tensor{DType: to, Data: b}); i >= 0 {
		return 0, errNonFiniteWeight{fmt.Errorf("%w: %s: tensor %q element %d (%s) is %s in %s: it overflows the compute dtype",
			ErrCheckpoint, ck.Path(), tn.Name, i, tn.DType, checkpoint.NonFiniteName(to, b[i*to.Size():]), to)}
	}
	if len(b) > len(dst) {
		return 0, fmt.Errorf("tensor %q: %d converted bytes, %d left in the destination", tn.Name, len(b), len(dst))
	}
	return copy(dst, b), nil
}

// GuardedTensor is ck.Tensor with memory faults on the mapped file turned into errors (a torch
// record's CRC is checked on first access, reading the mapping).
func GuardedTensor(ck checkpoint.Checkpoint, name string) (tn checkpoint.Tensor, err error) {
	err = checkpoint.GuardFault(ck.Path(), func() (err error) { tn, err = ck.Tensor(name); return err })
	return tn, err
}

// errNonFiniteWeight carries scanChecked's error through the tape unchanged.
type errNonFiniteWeight struct{ err error }

func (e errNonFiniteWeight) Error() string { return e.err.Error() }
func (e errNonFiniteWeight) Unwrap() error { return e.err }

// unwrapLoad returns scanChecked's own error when the tape holds one, else err.
func unwrapLoad(err error) error {
	var nf errNonFiniteWeight
	if errors.As(err, &nf) {
		return nf.err
	}
	return err
}

// loadChunk is the size of the pieces scanChecked checks and copies: small enough to stay in the
// CPU's L2 cache between the check and the copy, large enough to keep the goroutines busy.
const loadChunk = 1 << 20

// scanChecked checks every element of tns for NaN and ±Inf on up to GOMAXPROCS goroutines and, with
// dst non-nil, copies their data back to back into dst (len(dst) = their total size) on the way,
// releasing the pages of the checkpoint's mapping that have been copied from the resident set. With
// dst nil it only checks (the data stays mapped: it backs views). The error names the first
// non-finite element (tensor and index), as the reference's loader would see it first.
func scanChecked(ck checkpoint.Checkpoint, tns []checkpoint.Tensor, dst []byte) error {
	type chunk struct {
		part     int
		src, dst []byte
		first    int // index of the chunk's first element in its tensor
		bad      int // index of the first non-finite element in the chunk, or -1
	}
	var chunks []chunk
	off := 0
	for i, tn := range tns {
		size := tn.DType.Size()
		step := loadChunk / size * size
		for c := 0; c < len(tn.Data); c += step {
			n := min(step, len(tn.Data)-c)
			ch := chunk{part: i, src: tn.Data[c : c+n], first: c / size}
			if dst != nil && off+c+n <= len(dst) {
				ch.dst = dst[off+c : off+c+n]
			}
			chunks = append(chunks, ch)
		}
		off += len(tn.Data)
	}
	if dst != nil && off != len(dst) {
		return fmt.Errorf("%w: %s: %d bytes of data for a tensor of %d", ErrCheckpoint, ck.Path(), off, len(dst))
	}
	release := func([]byte) {}
	if r, ok := ck.(checkpoint.PageReleaser); ok && dst != nil {
		release = r.ReleasePages
	}
	var faults sync.Map // chunk index → error: a fault reading the mapping (file truncated under us)
	work := func(i int) {
		c := &chunks[i]
		err := checkpoint.GuardFault(ck.Path(), func() error {
			c.bad = checkpoint.FirstNonFinite(checkpoint.Tensor{DType: tns[c.part].DType, Data: c.src})
			if dst != nil {
				checkpoint.PrefaultWrite(c.dst) // fresh storage: one call instead of a fault per page
				copy(c.dst, c.src)
				release(c.src)
			}
			return nil
		})
		if err != nil {
			faults.Store(i, err)
		}
	}
	if workers := min(runtime.GOMAXPROCS(0), len(chunks)); workers <= 1 {
		for i := range chunks {
			work(i)
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(len(chunks)); i = next.Add(1) - 1 {
					work(int(i))
				}
			})
		}
		wg.Wait()
	}
	var fault error
	faults.Range(func(_, v any) bool { fault = v.(error); return false })
	if fault != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, fault)
	}
	for _, c := range chunks {
		if c.bad >= 0 {
			tn := tns[c.part]
			size := tn.DType.Size()
			return errNonFiniteWeight{fmt.Errorf("%w: %s: tensor %q element %d is %s", ErrCheckpoint, ck.Path(), tn.Name,
				c.first+c.bad, checkpoint.NonFiniteName(tn.DType, c.src[c.bad*size:]))}
		}
	}
	return nil
}

// checkpointDType is the inverse of torchDType (checkpoint.DType("") for other dtypes).
func checkpointDType(d gotch.DType) checkpoint.DType {
	switch d {
	case gotch.Float:
		return checkpoint.F32
	case gotch.Half:
		return checkpoint.F16
	case gotch.BFloat16:
		return checkpoint.BF16
	case gotch.Double:
		return checkpoint.F64
	}
	return ""
}

func torchDType(d checkpoint.DType) (gotch.DType, error) {
	switch d {
	case checkpoint.F32:
		return gotch.Float, nil
	case checkpoint.F16:
		return gotch.Half, nil
	case checkpoint.BF16:
		return gotch.BFloat16, nil
	case checkpoint.F64:
		return gotch.Double, nil
	}
	return gotch.Invalid, fmt.Errorf("dtype %s is not a supported float type", d)
}
