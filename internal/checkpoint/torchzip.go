package checkpoint

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
)

// maxPickleBytes bounds the size of a torch archive's data.pkl.
const maxPickleBytes = 256 << 20

// maxStridedCopy is the largest non-contiguous view materialised even when it is larger than its
// storage (an expanded, stride-0 view); larger ones are refused rather than allocated.
const maxStridedCopy = 16 << 20

// TorchFile is an open PyTorch zip checkpoint (torch.save since PyTorch 1.6, e.g. pytorch_model.bin).
// Its methods may be called concurrently, except Close.
type TorchFile struct {
	path     string
	m        *mapping // nil when parsed from a caller's buffer
	buf      []byte   // the whole archive
	prefix   string   // the archive's top folder with a trailing slash, e.g. "pytorch_model/"
	entries  map[string]torchEntry
	names    []string // sorted
	storages map[string]*torchStorage

	mu     sync.RWMutex
	closed bool
}

// View describes where a tensor of a torch checkpoint lies in its storage, all counts in elements.
type View struct {
	// Storage is the storage key: the bytes are the archive record <prefix>/data/<Storage>.
	Storage string
	// DType is the element type, from the storage type (FloatStorage is F32, and so on).
	DType DType
	// Shape and Stride have one entry per dimension; Stride[i] is the step in elements along dimension i.
	Shape, Stride []int64
	// Offset is the storage offset of element [0, 0, ...], in elements.
	Offset int64
	// Contiguous reports whether the view is row-major without gaps (as torch's is_contiguous), in which
	// case Tensor returns a view into the file instead of a copy.
	Contiguous bool
}

type torchEntry struct {
	storage    *torchStorage
	shape      []int64
	stride     []int64
	offset     int64
	contiguous bool
}

// torchStorage is one storage record of the archive.
type torchStorage struct {
	key    string
	record *zip.File
	dtype  DType
	numel  int64 // elements, as declared by the persistent id
	buf    []byte
	// lo and hi bound the bytes of the record that the tensors viewing it address (hi = 0: none).
	// A compressed record is inflated up to hi only, and what lies before lo is discarded.
	lo, hi int64

	once sync.Once
	data []byte // the record's bytes from base on, set by load
	base int64  // the record offset of data[0]: 0 for a stored record, lo for an inflated one
	err  error
}

// OpenTorch memory-maps and reads the PyTorch zip checkpoint at path. The data.pkl pickle is run by a
// restricted interpreter (see the package documentation); every tensor's storage record must exist and
// be large enough for the tensor's view. Views need not be contiguous: Tensor copies a strided view into
// row-major order, except that an expanded view (stride 0) with more elements than its storage and more
// than 16 MiB of data is refused when the file is opened, rather than allocated. Errors wrap [ErrFormat],
// [ErrUnsupported] or [ErrUnsafePickle].
func OpenTorch(path string) (*TorchFile, error) {
	m, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	f, err := parseTorchZip(path, m.data)
	if err != nil {
		m.close()
		return nil, err
	}
	f.m = m
	return f, nil
}

// parseTorchZip reads buf, the whole content of a torch zip checkpoint named path.
func parseTorchZip(path string, buf []byte) (*TorchFile, error) {
	if len(buf) > 0 && buf[0] == opProto {
		return nil, errorf(path, ErrUnsupported, "legacy (pre-1.6, non-zip) torch.save format")
	}
	zr, err := zip.NewReader(bytes.NewReader(buf), int64(len(buf)))
	if errors.Is(err, zip.ErrInsecurePath) {
		// Record names are only used as lookup keys, never as file system paths.
		err = nil
	}
	if err != nil {
		return nil, errorf(path, ErrFormat, "not a zip archive: %v", err)
	}
	records := make(map[string]*zip.File, len(zr.File))
	var pkls []string
	for _, zf := range zr.File {
		if _, dup := records[zf.Name]; dup {
			return nil, errorf(path, ErrFormat, "archive has two records named %q", zf.Name)
		}
		records[zf.Name] = zf
		if dir, ok := strings.CutSuffix(zf.Name, "/data.pkl"); ok && dir != "" && !strings.Contains(dir, "/") {
			pkls = append(pkls, zf.Name)
		}
	}
	switch len(pkls) {
	case 0:
		return nil, errorf(path, ErrFormat, "archive has no <name>/data.pkl record: not a torch.save checkpoint")
	case 1:
	default:
		sort.Strings(pkls)
		return nil, errorf(path, ErrFormat, "archive has several data.pkl records: %s", strings.Join(pkls, ", "))
	}
	f := &TorchFile{
		path:     path,
		buf:      buf,
		prefix:   strings.TrimSuffix(pkls[0], "data.pkl"),
		entries:  make(map[string]torchEntry),
		storages: make(map[string]*torchStorage),
	}

	if zf := records[f.prefix+"byteorder"]; zf != nil {
		order, err := readRecord(buf, zf, 64)
		if err != nil {
			return nil, errorf(path, ErrFormat, "%v", err)
		}
		if s := strings.TrimSpace(string(order)); s != "little" {
			return nil, errorf(path, ErrUnsupported, "byte order %q (only little-endian archives are read)", s)
		}
	}

	pkl, err := readRecord(buf, records[pkls[0]], maxPickleBytes)
	if err != nil {
		return nil, errorf(path, ErrFormat, "%v", err)
	}
	u := &unpickler{
		data:           pkl,
		findGlobal:     torchGlobal,
		persistentLoad: f.persistentLoad,
	}
	root, err := u.load()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %s: %s: %w", path, pkls[0], err)
	}
	dict, ok := root.(*pyDict)
	if !ok {
		return nil, errorf(path, ErrFormat, "%s holds a %s, not a state dict", pkls[0], pyTypeName(root))
	}
	for i, k := range dict.keys {
		name, ok := k.(string)
		if !ok {
			return nil, errorf(path, ErrFormat, "state dict key %d is a %s, not a str", i, pyTypeName(k))
		}
		t, ok := dict.vals[i].(*tensorRef)
		if !ok {
			return nil, errorf(path, ErrFormat, "tensor %q: value is a %s, not a tensor", name, pyTypeName(dict.vals[i]))
		}
		e, err := f.checkView(t, records)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: tensor %q: %w", path, name, err)
		}
		f.entries[name] = e
		f.names = append(f.names, name)
	}
	sort.Strings(f.names)
	return f, nil
}

// readRecord returns the bytes of a record: a view into buf when stored, else inflated (at most limit
// bytes). The CRC-32 is checked unless the archive recorded 0.
func readRecord(buf []byte, zf *zip.File, limit uint64) ([]byte, error) {
	if zf.UncompressedSize64 > limit {
		return nil, fmt.Errorf("record %s: %d bytes exceed the limit of %d", zf.Name, zf.UncompressedSize64, limit)
	}
	var data []byte
	switch zf.Method {
	case zip.Store:
		off, err := zf.DataOffset()
		if err != nil {
			return nil, fmt.Errorf("record %s: %v", zf.Name, err)
		}
		size := zf.UncompressedSize64
		if zf.CompressedSize64 != size {
			return nil, fmt.Errorf("record %s: stored record with compressed size %d != size %d", zf.Name, zf.CompressedSize64, size)
		}
		if off < 0 || uint64(off) > uint64(len(buf)) || size > uint64(len(buf))-uint64(off) {
			return nil, fmt.Errorf("record %s: %d bytes at offset %d run past the end of the archive", zf.Name, size, off)
		}
		data = buf[off : off+int64(size) : off+int64(size)]
	case zip.Deflate:
		rc, err := zf.Open()
		if err != nil {
			return nil, fmt.Errorf("record %s: %v", zf.Name, err)
		}
		defer rc.Close()
		// archive/zip checks the size and CRC-32 when the reader reaches the end.
		data, err = io.ReadAll(io.LimitReader(rc, int64(zf.UncompressedSize64)+1))
		if err != nil {
			return nil, fmt.Errorf("record %s: %v", zf.Name, err)
		}
		if uint64(len(data)) != zf.UncompressedSize64 {
			return nil, fmt.Errorf("record %s: inflates to %d bytes, not %d", zf.Name, len(data), zf.UncompressedSize64)
		}
		return data, nil
	default:
		return nil, fmt.Errorf("record %s: compression method %d is not supported", zf.Name, zf.Method)
	}
	if zf.CRC32 != 0 && crc32.ChecksumIEEE(data) != zf.CRC32 {
		return nil, fmt.Errorf("record %s: CRC-32 mismatch", zf.Name)
	}
	return data, nil
}

// storageRef is what a persistent id resolves to: a storage key with its type and size.
type storageRef struct {
	key      string
	dtype    DType
	numel    int64
	location string
}

func (*storageRef) pyName() string { return "storage" }

// tensorRef is what _rebuild_tensor_v2 builds: a view of a storage.
type tensorRef struct {
	storage *storageRef
	offset  int64
	shape   []int64
	stride  []int64
}

func (*tensorRef) pyName() string { return "tensor" }

// persistentLoad resolves torch.save's persistent id ('storage', storage_type, key, location, numel).
// The record itself is looked up later, with the name of the tensor that uses it.
func (f *TorchFile) persistentLoad(pid any) (any, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) != 5 {
		return nil, fmt.Errorf("persistent id is a %s, not a 5-tuple ('storage', type, key, location, numel)", pyTypeName(pid))
	}
	if tag, _ := t[0].(string); tag != "storage" {
		return nil, fmt.Errorf("persistent id tag is not 'storage'")
	}
	st, ok := t[1].(storageType)
	if !ok {
		return nil, fmt.Errorf("persistent id storage type is a %s", pyTypeName(t[1]))
	}
	key, ok1 := t[2].(string)
	loc, ok2 := t[3].(string)
	numel, ok3 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || numel < 0 {
		return nil, fmt.Errorf("persistent id (storage, %s, %s, %s, %s) is not (str, str, non-negative int)",
			st.pyName(), pyTypeName(t[2]), pyTypeName(t[3]), pyTypeName(t[4]))
	}
	if s, ok := f.storages[key]; ok {
		if s.dtype != st.dtype || s.numel != numel {
			return nil, fmt.Errorf("storage %q is used as %d %s and as %d %s", key, s.numel, s.dtype, numel, st.dtype)
		}
		return &storageRef{key: key, dtype: st.dtype, numel: numel, location: loc}, nil
	}
	f.storages[key] = &torchStorage{key: key, dtype: st.dtype, numel: numel, buf: f.buf}
	return &storageRef{key: key, dtype: st.dtype, numel: numel, location: loc}, nil
}

// checkView checks a tensor view against its storage record and returns the entry for it.
func (f *TorchFile) checkView(t *tensorRef, records map[string]*zip.File) (torchEntry, error) {
	s := f.storages[t.storage.key]
	if s.record == nil {
		s.record = records[f.prefix+"data/"+s.key]
		if s.record == nil {
			return torchEntry{}, fmt.Errorf("%w: storage %q: record %sdata/%s is missing from the archive", ErrFormat, s.key, f.prefix, s.key)
		}
	}
	size := s.dtype.Size()
	need, ok := byteSize(s.numel, size)
	if !ok || uint64(need) != s.record.UncompressedSize64 {
		// torch.save writes each storage as exactly numel × itemsize bytes; a record of any other size
		// (a larger one could be a deflate bomb behind a small storage) is not one it wrote.
		return torchEntry{}, fmt.Errorf("%w: storage %q: %d elements of %s do not fit its %d-byte record exactly (torch.save writes numel × itemsize bytes)",
			ErrFormat, s.key, s.numel, s.dtype, s.record.UncompressedSize64)
	}
	e := torchEntry{storage: s, shape: t.shape, stride: t.stride, offset: t.offset}
	numel, ok := numElements(t.shape)
	if !ok {
		return torchEntry{}, fmt.Errorf("%w: shape %v is invalid", ErrFormat, t.shape)
	}
	if _, ok := byteSize(numel, size); !ok {
		return torchEntry{}, fmt.Errorf("%w: shape %v of %s is too large", ErrFormat, t.shape, s.dtype)
	}
	if numel > 0 {
		// The last element addressed is offset + sum((shape[i]-1) * stride[i]); it must be in the storage.
		last := t.offset
		for i := range t.shape {
			step := t.shape[i] - 1
			if t.stride[i] != 0 && step > (math.MaxInt64-last)/t.stride[i] {
				return torchEntry{}, fmt.Errorf("%w: view (offset %d, shape %v, stride %v) overflows", ErrFormat, t.offset, t.shape, t.stride)
			}
			last += step * t.stride[i]
		}
		if last >= s.numel {
			return torchEntry{}, fmt.Errorf("%w: view (offset %d, shape %v, stride %v) reaches element %d of storage %q, which has %d",
				ErrFormat, t.offset, t.shape, t.stride, last, s.key, s.numel)
		}
		first := t.offset // strides are non-negative (checked by the unpickler), so the first element is the lowest
		if s.hi == 0 || first*int64(size) < s.lo {
			s.lo = first * int64(size)
		}
		s.hi = max(s.hi, (last+1)*int64(size))
	}
	e.contiguous = isContiguous(t.shape, t.stride)
	if !e.contiguous && numel > s.numel && numel*int64(size) > maxStridedCopy {
		return torchEntry{}, fmt.Errorf("%w: non-contiguous view (shape %v, stride %v) of %d elements is larger than its storage of %d and than %d bytes",
			ErrUnsupported, t.shape, t.stride, numel, s.numel, maxStridedCopy)
	}
	return e, nil
}

// isContiguous reports whether a view is row-major without gaps, as torch's is_contiguous: dimensions
// of size 1 may have any stride, and an empty view is contiguous.
func isContiguous(shape, stride []int64) bool {
	if slices.Contains(shape, 0) {
		return true
	}
	expect := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] == 1 {
			continue
		}
		if stride[i] != expect {
			return false
		}
		expect *= shape[i]
	}
	return true
}

// load returns the storage's bytes from s.base on: the whole record as a view into the archive when
// it is stored; when it is compressed, bytes [lo, hi) inflated once (only what the views address, so a
// record that inflates to far more than its tensors need costs no memory for the rest).
func (s *torchStorage) load() ([]byte, int64, error) {
	s.once.Do(func() {
		if s.record.Method == zip.Store {
			s.data, s.err = readRecord(s.buf, s.record, uint64(math.MaxInt))
			return
		}
		s.base = s.lo
		s.data, s.err = inflateRange(s.record, s.lo, s.hi)
	})
	return s.data, s.base, s.err
}

// inflateRange inflates bytes [lo, hi) of a deflated record, discarding what comes before lo and never
// inflating past hi. The record's CRC-32 covers all of it, so it is checked only when [lo, hi) is the
// whole record.
func inflateRange(zf *zip.File, lo, hi int64) ([]byte, error) {
	if lo == 0 && uint64(hi) == zf.UncompressedSize64 {
		return readRecord(nil, zf, zf.UncompressedSize64)
	}
	if zf.Method != zip.Deflate {
		return nil, fmt.Errorf("record %s: compression method %d is not supported", zf.Name, zf.Method)
	}
	if hi <= lo {
		return nil, nil
	}
	rc, err := zf.OpenRaw()
	if err != nil {
		return nil, fmt.Errorf("record %s: %v", zf.Name, err)
	}
	fr := flate.NewReader(rc)
	defer fr.Close()
	if _, err := io.CopyN(io.Discard, fr, lo); err != nil {
		return nil, fmt.Errorf("record %s: inflating to byte %d: %v", zf.Name, lo, err)
	}
	data := make([]byte, hi-lo)
	if _, err := io.ReadFull(fr, data); err != nil {
		return nil, fmt.Errorf("record %s: inflating bytes %d to %d: %v", zf.Name, lo, hi, err)
	}
	return data, nil
}

// Path returns the path the archive was opened from.
func (f *TorchFile) Path() string { return f.path }

// Names returns the tensor names in sorted order (a new slice).
func (f *TorchFile) Names() []string { return slices.Clone(f.names) }

// Info returns the name, dtype and shape of a tensor without its data, and whether it exists.
func (f *TorchFile) Info(name string) (Tensor, bool) {
	e, ok := f.entries[name]
	if !ok {
		return Tensor{}, false
	}
	return Tensor{Name: name, DType: e.storage.dtype, Shape: slices.Clone(e.shape)}, true
}

// View returns where a tensor lies in its storage, and whether it exists.
func (f *TorchFile) View(name string) (View, bool) {
	e, ok := f.entries[name]
	if !ok {
		return View{}, false
	}
	return View{
		Storage: e.storage.key, DType: e.storage.dtype,
		Shape: slices.Clone(e.shape), Stride: slices.Clone(e.stride),
		Offset: e.offset, Contiguous: e.contiguous,
	}, true
}

// Tensor returns a tensor with its data in row-major order. For a contiguous view of a stored (not
// compressed) record, the normal case, Data is a read-only view into the mapping, valid until Close;
// a non-contiguous view is copied into a new contiguous slice. The first access to a storage verifies
// its CRC-32. A missing name is an error wrapping [ErrNotFound].
func (f *TorchFile) Tensor(name string) (Tensor, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return Tensor{}, fmt.Errorf("checkpoint: %s: tensor %q: %w", f.path, name, ErrClosed)
	}
	e, ok := f.entries[name]
	if !ok {
		return Tensor{}, fmt.Errorf("checkpoint: %s: tensor %q: %w", f.path, name, ErrNotFound)
	}
	data, base, err := e.storage.load()
	if err != nil {
		return Tensor{}, fmt.Errorf("checkpoint: %s: tensor %q: %w: %v", f.path, name, ErrFormat, err)
	}
	size := e.storage.dtype.Size()
	numel, _ := numElements(e.shape)
	t := Tensor{Name: name, DType: e.storage.dtype, Shape: slices.Clone(e.shape)}
	offset := e.offset - base/int64(size) // base is a multiple of size
	if e.contiguous {
		begin := int(offset) * size
		if numel == 0 {
			begin = 0
		}
		end := begin + int(numel)*size
		t.Data = data[begin:end:end]
		return t, nil
	}
	t.Data = gather(data, size, offset, e.shape, e.stride, numel)
	return t, nil
}

// gather copies a strided view (already checked to lie inside data) into a new row-major slice.
func gather(data []byte, size int, offset int64, shape, stride []int64, numel int64) []byte {
	out := make([]byte, int(numel)*size)
	if numel == 0 {
		return out
	}
	idx := make([]int64, len(shape))
	pos := offset
	for o := 0; o < len(out); o += size {
		copy(out[o:o+size], data[int(pos)*size:])
		// Advance the multi-index like an odometer, last dimension fastest.
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d]++
			pos += stride[d]
			if idx[d] < shape[d] {
				break
			}
			pos -= idx[d] * stride[d]
			idx[d] = 0
		}
	}
	return out
}

// ReleasePages drops the pages of data, a view into the archive, from the resident set; see
// [PageReleaser]. Copies (non-contiguous views, compressed records) are left alone.
func (f *TorchFile) ReleasePages(data []byte) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if !f.closed {
		f.m.release(data)
	}
}

// Close unmaps the archive. The Data of tensors returned earlier must not be used afterwards, except
// copies (non-contiguous views, compressed records). Closing twice is not an error.
func (f *TorchFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.buf = nil
	for _, s := range f.storages {
		s.buf = nil
	}
	if f.m != nil {
		if err := f.m.close(); err != nil {
			return fmt.Errorf("checkpoint: %s: munmap: %w", f.path, err)
		}
	}
	return nil
}
