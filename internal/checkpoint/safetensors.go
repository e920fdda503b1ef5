package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
)

// MaxSafetensorsHeader is the largest safetensors JSON header accepted, in bytes (the limit the
// reference implementation uses).
const MaxSafetensorsHeader = 100_000_000

// File is an open safetensors file. Its methods may be called concurrently, except Close.
type File struct {
	path     string
	m        *mapping // nil when parsed from a caller's buffer
	data     []byte   // the data section: everything after the header
	entries  map[string]stEntry
	names    []string // sorted
	metadata map[string]string

	mu     sync.RWMutex
	closed bool // Close was called: no new tensors
	refs   int  // outstanding Retain calls; the mapping stays until Close and every release
}

type stEntry struct {
	dtype      DType
	shape      []int64
	begin, end int // byte range within the data section
}

// stRawEntry is one tensor of the JSON header as written.
type stRawEntry struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// OpenSafetensors memory-maps and validates the safetensors file at path. The whole header is
// checked: its length (at most [MaxSafetensorsHeader] and within the file), its JSON, every tensor's
// dtype, shape and byte range (inside the data section, exactly numel*itemsize long, no two tensors
// overlapping; gaps between tensors are allowed). Errors wrap [ErrFormat] or, for a dtype this package
// does not read, [ErrUnsupported].
func OpenSafetensors(path string) (*File, error) {
	m, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	f, err := parseSafetensors(path, m.data)
	if err != nil {
		m.close()
		return nil, err
	}
	f.m = m
	return f, nil
}

// parseSafetensors validates buf, the whole content of a safetensors file named path.
func parseSafetensors(path string, buf []byte) (*File, error) {
	if len(buf) < 8 {
		return nil, errorf(path, ErrFormat, "file of %d bytes is too short for the 8-byte safetensors header length", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	if n > MaxSafetensorsHeader {
		return nil, errorf(path, ErrFormat, "safetensors header length %d exceeds the limit of %d bytes", n, MaxSafetensorsHeader)
	}
	if n > uint64(len(buf)-8) {
		return nil, errorf(path, ErrFormat, "safetensors header length %d exceeds the %d bytes that follow it", n, len(buf)-8)
	}
	hdr := buf[8 : 8+n]
	if len(hdr) == 0 || hdr[0] != '{' {
		return nil, errorf(path, ErrFormat, "safetensors header is not a JSON object")
	}
	f := &File{
		path:    path,
		data:    buf[8+n:],
		entries: make(map[string]stEntry),
	}

	dec := json.NewDecoder(bytes.NewReader(hdr))
	if _, err := dec.Token(); err != nil { // the opening '{', checked above
		return nil, errorf(path, ErrFormat, "safetensors header is not JSON: %v", err)
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errorf(path, ErrFormat, "safetensors header is not JSON: %v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errorf(path, ErrFormat, "safetensors header is not JSON: unexpected %v", tok)
		}
		if seen[name] {
			return nil, errorf(path, ErrFormat, "safetensors header lists %q twice", name)
		}
		seen[name] = true
		if name == "__metadata__" {
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				return nil, errorf(path, ErrFormat, "__metadata__ is not an object of strings: %v", err)
			}
			f.metadata = md
			continue
		}
		var raw stRawEntry
		if err := dec.Decode(&raw); err != nil {
			var syntax *json.SyntaxError
			if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errorf(path, ErrFormat, "safetensors header is not JSON (in tensor %q): %v", name, err)
			}
			return nil, fmt.Errorf("checkpoint: %s: tensor %q: %w: header entry is not {dtype, shape, data_offsets}: %v", path, name, ErrFormat, err)
		}
		e, err := checkEntry(raw, len(f.data))
		if err != nil {
			return nil, fmt.Errorf("checkpoint: %s: tensor %q: %w", path, name, err)
		}
		f.entries[name] = e
		f.names = append(f.names, name)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, errorf(path, ErrFormat, "safetensors header is not JSON: %v", err)
	}
	// Only padding (spaces) may follow the object inside the declared header length.
	if rest := hdr[dec.InputOffset():]; len(bytes.TrimLeft(rest, " \t\r\n")) != 0 {
		return nil, errorf(path, ErrFormat, "safetensors header has %d bytes of trailing data after the JSON object", len(rest))
	}
	sort.Strings(f.names)
	if err := checkOverlaps(f); err != nil {
		return nil, errorf(path, ErrFormat, "%v", err)
	}
	return f, nil
}

// checkEntry validates one header entry against a data section of dataLen bytes. Its errors wrap
// ErrFormat, or ErrUnsupported for a dtype outside DType's set.
func checkEntry(raw stRawEntry, dataLen int) (stEntry, error) {
	dt := DType(raw.DType)
	switch {
	case raw.DType == "":
		return stEntry{}, fmt.Errorf("%w: missing dtype", ErrFormat)
	case !dt.Valid():
		return stEntry{}, fmt.Errorf("%w: dtype %q", ErrUnsupported, raw.DType)
	case raw.Shape == nil:
		return stEntry{}, fmt.Errorf("%w: missing shape", ErrFormat)
	case len(raw.DataOffsets) != 2:
		return stEntry{}, fmt.Errorf("%w: data_offsets must be [begin, end], got %d numbers", ErrFormat, len(raw.DataOffsets))
	}
	numel, ok := numElements(raw.Shape)
	if !ok {
		return stEntry{}, fmt.Errorf("%w: invalid shape %v: dimensions must be non-negative and their product must fit in 64 bits", ErrFormat, raw.Shape)
	}
	nbytes, ok := byteSize(numel, dt.Size())
	if !ok {
		return stEntry{}, fmt.Errorf("%w: shape %v of %s is too large", ErrFormat, raw.Shape, dt)
	}
	begin, end := raw.DataOffsets[0], raw.DataOffsets[1]
	if begin < 0 || end < begin || end > int64(dataLen) {
		return stEntry{}, fmt.Errorf("%w: data_offsets [%d, %d] are out of range of the %d-byte data section", ErrFormat, begin, end, dataLen)
	}
	if end-begin != int64(nbytes) {
		return stEntry{}, fmt.Errorf("%w: data_offsets [%d, %d] span %d bytes but shape %v of %s needs %d",
			ErrFormat, begin, end, end-begin, raw.Shape, dt, nbytes)
	}
	return stEntry{dtype: dt, shape: slices.Clone(raw.Shape), begin: int(begin), end: int(end)}, nil
}

// checkOverlaps reports two tensors whose byte ranges overlap. Empty tensors overlap nothing.
func checkOverlaps(f *File) error {
	type span struct {
		name       string
		begin, end int
	}
	spans := make([]span, 0, len(f.names))
	for _, name := range f.names {
		if e := f.entries[name]; e.end > e.begin {
			spans = append(spans, span{name, e.begin, e.end})
		}
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].begin != spans[j].begin {
			return spans[i].begin < spans[j].begin
		}
		return spans[i].name < spans[j].name
	})
	for i := 1; i < len(spans); i++ {
		// Sorted by begin: if no earlier neighbour overlapped, the ends are non-decreasing too, so the
		// previous span has the furthest end seen so far and is the only one to compare with.
		if prev := spans[i-1]; spans[i].begin < prev.end {
			return fmt.Errorf("tensors %q [%d, %d] and %q [%d, %d] overlap",
				prev.name, prev.begin, prev.end, spans[i].name, spans[i].begin, spans[i].end)
		}
	}
	return nil
}

// Path returns the path the file was opened from.
func (f *File) Path() string { return f.path }

// Names returns the tensor names in sorted order (a new slice; __metadata__ is not a tensor).
func (f *File) Names() []string { return slices.Clone(f.names) }

// Metadata returns the header's __metadata__ string map (nil when absent). Do not modify it.
func (f *File) Metadata() map[string]string { return f.metadata }

// Info returns the name, dtype and shape of a tensor without its data, and whether it exists.
func (f *File) Info(name string) (Tensor, bool) {
	e, ok := f.entries[name]
	if !ok {
		return Tensor{}, false
	}
	return Tensor{Name: name, DType: e.dtype, Shape: slices.Clone(e.shape)}, true
}

// Tensor returns a tensor with its data: a read-only view into the mapping, valid until Close.
// A missing name is an error wrapping [ErrNotFound].
func (f *File) Tensor(name string) (Tensor, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return Tensor{}, fmt.Errorf("checkpoint: %s: tensor %q: %w", f.path, name, ErrClosed)
	}
	e, ok := f.entries[name]
	if !ok {
		return Tensor{}, fmt.Errorf("checkpoint: %s: tensor %q: %w", f.path, name, ErrNotFound)
	}
	return Tensor{Name: name, DType: e.dtype, Shape: slices.Clone(e.shape), Data: f.data[e.begin:e.end:e.end]}, nil
}

// ReleasePages drops the pages of data, a view into the file, from the resident set; see [PageReleaser].
func (f *File) ReleasePages(data []byte) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if !f.closed {
		f.m.release(data)
	}
}

// Retain keeps the file's memory (the mapping) valid after Close, until release is called, so that
// tensor data handed out earlier may back a model for as long as it lives (e.g. libtorch tensors that
// view it, gotchutil.ViewCPU): a loader retains the file, closes it as usual once loading is done, and
// calls release from the model's Close after the tensors viewing the memory are dropped. The mapping
// is unmapped when Close has been called and every release has been called, whichever comes last.
// release is idempotent; Retain after Close is an error wrapping [ErrClosed].
//
// [File.ReleasePages] must not be used on retained data that backs tensors: it only drops pages from
// the resident set (they fault back in), but that defeats its purpose.
func (f *File) Retain() (release func() error, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("checkpoint: %s: retain: %w", f.path, ErrClosed)
	}
	f.refs++
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.refs--
			if f.closed && f.refs == 0 {
				err = f.unmap()
			}
		})
		return err
	}, nil
}

// Retainer is implemented by checkpoints whose tensor data can outlive Close on request ([*File]).
type Retainer interface {
	Retain() (release func() error, err error)
}

var _ Retainer = (*File)(nil)

// Close ends the use of the file: Tensor and ReleasePages stop working. The mapping is
// unmapped now, or, while the file is retained ([File.Retain]), at the last release; until then the
// Data of tensors returned earlier stays valid. Closing twice is not an error.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if f.refs > 0 {
		return nil
	}
	return f.unmap()
}

// unmap drops the mapping; call it with f.mu held for writing.
func (f *File) unmap() error {
	f.data = nil
	if f.m != nil {
		if err := f.m.close(); err != nil {
			return fmt.Errorf("checkpoint: %s: munmap: %w", f.path, err)
		}
	}
	return nil
}
