package imageproc

import (
	"bytes"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sdsafety/safety/internal/fileread"
)

// withDeadline runs fn and panics (ending the test binary) if it has not returned after d: the
// hostile files below hang or grow without bound on a reader that trusts them, and a regression must
// fail fast rather than hang or exhaust memory.
func withDeadline[T any](t *testing.T, d time.Duration, what string, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		panic(what + ": still running after " + d.String() + " (unbounded or blocking read)")
	}
}

// TestReadFileHostile covers issue 13 item 1: files that are not images, or not files, are refused
// before they are read whole, within a bounded time and memory.
func TestReadFileHostile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("named pipes and /dev/zero are Unix cases")
	}
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := png.Encode(&buf, pattern(5, 4, 1)); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.png")
	if err := os.WriteFile(good, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "x.png")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.png")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	// Sparse files: a PNG signature followed by a hole larger than the limit allows, and a 1 GiB
	// non-image. Neither takes disk space, and neither may be read whole.
	opts := &DecodeOptions{MaxPixels: 1000}
	limit := MaxFileSize(opts)
	sparse := func(name string, head []byte, size int64) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, head, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bigPNG := sparse("big.png", buf.Bytes()[:16], limit+1)
	nonImage := sparse("big.bin.png", []byte("not an image at all"), 1<<30)
	empty := sparse("empty.png", nil, 0)

	for _, tc := range []struct {
		name, path string
		want       []error
		opts       *DecodeOptions // nil: opts
	}{
		{"named pipe", fifo, []error{ErrUnsupportedFormat, fileread.ErrNotRegular}, opts},
		{"symlink to /dev/zero", zero, []error{ErrUnsupportedFormat, fileread.ErrNotRegular}, opts},
		{"directory", dir, []error{ErrUnsupportedFormat, fileread.ErrNotRegular}, opts},
		{"sparse PNG over the size limit", bigPNG, []error{ErrTooLarge, fileread.ErrTooLarge}, opts},
		// Under the default limit (1.6 GB) it is the first bytes that refuse it.
		{"1 GiB non-image", nonImage, []error{ErrUnsupportedFormat}, nil},
		{"1 GiB non-image, small limit", nonImage, []error{ErrTooLarge}, opts},
		{"empty file", empty, []error{ErrEmptyImage}, opts},
		{"missing file", filepath.Join(dir, "missing.png"), []error{os.ErrNotExist}, opts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			start := time.Now()
			err := withDeadline(t, 5*time.Second, tc.name, func() error {
				_, err := DecodeFile(tc.path, tc.opts)
				return err
			})
			elapsed := time.Since(start)
			runtime.ReadMemStats(&m1)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("DecodeFile(%s) = %v, want an error wrapping %v", tc.name, err, w)
				}
			}
			if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 1<<20 {
				t.Errorf("refusing %s allocated %d bytes, want < 1 MiB", tc.name, alloc)
			}
			if elapsed > time.Second {
				t.Errorf("refusing %s took %v", tc.name, elapsed)
			}
		})
	}

	// The control: a real image within the limits decodes, through the same reader.
	img, err := DecodeFile(good, opts)
	if err != nil || img.Width != 5 || img.Height != 4 {
		t.Fatalf("DecodeFile(good) = %v, %v; want a 5x4 image", img, err)
	}
	data, err := ReadFile(good, opts)
	if err != nil || !bytes.Equal(data, buf.Bytes()) {
		t.Fatalf("ReadFile(good) = %d bytes, %v; want the file's %d bytes", len(data), err, buf.Len())
	}
	if got := MaxFileSize(nil); got != DefaultMaxPixels*bytesPerPixel+fileSlack {
		t.Errorf("MaxFileSize(nil) = %d", got)
	}
}
