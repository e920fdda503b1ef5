package fileread

import (
	"errors"
	"fmt"
	"io"
	"os"
)

var (
	// ErrNotRegular: the path names a named pipe, a device, a socket or a directory (after following
	// symbolic links), which is never read.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file is larger than the caller's limit.
	ErrTooLarge = errors.New("file too large")
)

// Open opens path for reading without blocking on a named pipe (O_NONBLOCK where the platform has
// it) and returns the file with its size, or an error wrapping [ErrNotRegular] for anything that is
// not a regular file, or [ErrTooLarge] when the file is larger than limit bytes (limit < 0: no limit).
// The caller closes the file.
func Open(path string, limit int64) (*os.File, int64, error) {
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, kind(st.Mode()))
	}
	if limit >= 0 && st.Size() > limit {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %d bytes: %w (the limit is %d)", path, st.Size(), ErrTooLarge, limit)
	}
	return f, st.Size(), nil
}

// ReadFile is os.ReadFile through [Open]: it refuses what is not a regular file and a file of more
// than limit bytes (limit < 0: no limit), and never reads more than limit bytes even if the file grows.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, size, err := Open(path, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, path, nil, size, limit)
}

// ReadAll returns head followed by the rest of f, for a file of size bytes of which head was read
// already, reading through limit (limit < 0: no limit; head counts towards it) and returning an error
// wrapping [ErrTooLarge] when the file holds more than limit bytes. path names f in errors.
func ReadAll(f io.Reader, path string, head []byte, size, limit int64) ([]byte, error) {
	r := f
	if limit >= 0 {
		r = io.LimitReader(f, max(limit-int64(len(head)), 0)+1)
	}
	buf := make([]byte, 0, max(size, int64(len(head)))+1) // +1: room to see the end without growing
	buf = append(buf, head...)
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
	if limit >= 0 && int64(len(buf)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes (it grew while being read): %w", path, limit, ErrTooLarge)
	}
	return buf, nil
}

// kind names a non-regular file mode for error messages.
func kind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeCharDevice != 0:
		return "character device"
	case m&os.ModeDevice != 0:
		return "device"
	case m&os.ModeSocket != 0:
		return "socket"
	case m.IsDir():
		return "directory"
	case m&os.ModeIrregular != 0:
		return "irregular file"
	}
	return m.Type().String()
}

// ConfigLimit bounds the JSON files of a model directory (config.json, preprocessor_config.json,
// tokenizer files: CLIP's tokenizer.json is about 3.6 MB).
const ConfigLimit = 64 << 20
