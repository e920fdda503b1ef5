package checkpoint

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
)

// Checkpoint is a set of named tensors read from a weights file: a [*File] (safetensors) or a
// [*TorchFile] (PyTorch zip). Its methods may be called concurrently, except Close.
type Checkpoint interface {
	// Names returns the tensor names in sorted order (a new slice).
	Names() []string
	// Info returns the name, dtype and shape of a tensor, with nil Data, and whether it exists.
	Info(name string) (Tensor, bool)
	// Tensor returns a tensor with its row-major little-endian data; see the implementations for
	// whether Data is a view into the file (valid until Close, read-only) or a copy.
	Tensor(name string) (Tensor, error)
	// Close releases the file; tensor data viewing it must not be used afterwards.
	Close() error
	// Path returns the path the checkpoint was opened from.
	Path() string
}

// PageReleaser is implemented by the checkpoints whose tensor data can be a view into a memory-mapped
// file ([*File], [*TorchFile]). ReleasePages drops the whole pages inside data (a tensor's Data, or
// part of it) from the process's resident set once they have been copied elsewhere, so that loading a
// model does not hold the file's pages and the model's tensors at the same time. The data stays
// readable: a later access reads it back from the page cache. Data that is not a view into the
// mapping (a copy) is left alone, and so is everything after Close.
type PageReleaser interface {
	ReleasePages(data []byte)
}

var (
	_ PageReleaser = (*File)(nil)
	_ PageReleaser = (*TorchFile)(nil)
	_ Checkpoint   = (*File)(nil)
	_ Checkpoint   = (*TorchFile)(nil)
)

// Open opens a weights file of either format, chosen by content: a zip archive is read as a PyTorch
// checkpoint ([OpenTorch]), anything else as safetensors ([OpenSafetensors]), except that a .bin,
// .pt, .pth or .ckpt file that is not a zip is reported as a malformed (or legacy) torch file.
func Open(path string) (Checkpoint, error) {
	m, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	var c Checkpoint
	switch ext := strings.ToLower(filepath.Ext(path)); {
	case bytes.HasPrefix(m.data, []byte("PK\x03\x04")) || bytes.HasPrefix(m.data, []byte("PK\x05\x06")),
		ext == ".bin" || ext == ".pt" || ext == ".pth" || ext == ".ckpt":
		var f *TorchFile
		f, err = parseTorchZip(path, m.data)
		if err == nil {
			f.m, c = m, f
		}
	default:
		var f *File
		f, err = parseSafetensors(path, m.data)
		if err == nil {
			f.m, c = m, f
		}
	}
	if err != nil {
		m.close()
		return nil, err
	}
	return c, nil
}

// errorf formats an error about the file at path; it exists so that all messages share one prefix.
func errorf(path string, kind error, format string, args ...any) error {
	return fmt.Errorf("checkpoint: %s: %w: "+format, append([]any{path, kind}, args...)...)
}
