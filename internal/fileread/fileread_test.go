package fileread_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sdsafety/safety/internal/clip"
	"github.com/sdsafety/safety/internal/fileread"
	"github.com/sdsafety/safety/internal/imageproc"
)

// TestReadFileRefuses covers the config side of issue 13 item 1: named pipes, devices and
// directories are refused without blocking, a file over the limit is refused before it is read, and
// the loaders of config.json and preprocessor_config.json go through the same reader.
func TestReadFileRefuses(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("named pipes and /dev/zero are Unix cases")
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "config.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.json")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, fileread.ConfigLimit+1); err != nil { // sparse
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.json")
	if err := os.WriteFile(small, []byte(`{"a": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	loaders := map[string]func(string) error{
		"fileread.ReadFile": func(p string) error { _, err := fileread.ReadFile(p, fileread.ConfigLimit); return err },
		"clip.LoadConfig":   func(p string) error { _, err := clip.LoadConfig(p); return err },
		"clip.LoadTextConfig": func(p string) error {
			_, err := clip.LoadTextConfig(p)
			return err
		},
		"imageproc.LoadConfig": func(p string) error { _, err := imageproc.LoadConfig(p); return err },
	}
	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"named pipe", fifo, fileread.ErrNotRegular},
		{"symlink to /dev/zero", zero, fileread.ErrNotRegular},
		{"sparse file over the limit", big, fileread.ErrTooLarge},
	} {
		for lname, load := range loaders {
			t.Run(tc.name+"/"+lname, func(t *testing.T) {
				done := make(chan error, 1)
				go func() { done <- load(tc.path) }()
				select {
				case err := <-done:
					if !errors.Is(err, tc.want) {
						t.Fatalf("%s(%s) = %v, want an error wrapping %v", lname, tc.name, err, tc.want)
					}
				case <-time.After(5 * time.Second):
					panic(lname + "(" + tc.name + ") blocked for 5 s")
				}
			})
		}
	}
	data, err := fileread.ReadFile(small, 7)
	if !errors.Is(err, fileread.ErrTooLarge) {
		t.Errorf("ReadFile(8 bytes, limit 7) = %q, %v; want ErrTooLarge", data, err)
	}
	if data, err := fileread.ReadFile(small, 8); err != nil || string(data) != `{"a": 1}` {
		t.Errorf("ReadFile(8 bytes, limit 8) = %q, %v", data, err)
	}
	if data, err := fileread.ReadFile(small, -1); err != nil || string(data) != `{"a": 1}` {
		t.Errorf("ReadFile(no limit) = %q, %v", data, err)
	}
}

// TestReadAllLimit: ReadAll stops at the limit even when the file turned out longer than its size
// said (it grew while being read), and returns the head it was given in front of the rest.
func TestReadAllLimit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		head, rest  string
		size, limit int64
		want        string
		err         error
	}{
		{"grew past the limit", "", "abcdef", 2, 4, "", fileread.ErrTooLarge},
		{"grew within the limit", "", "abcdef", 2, 6, "abcdef", nil},
		{"head and rest", "ab", "cdef", 6, 6, "abcdef", nil},
		{"head and rest over the limit", "ab", "cdefg", 6, 6, "", fileread.ErrTooLarge},
		{"no limit", "ab", "cdefg", 0, -1, "abcdefg", nil},
	} {
		got, err := fileread.ReadAll(strings.NewReader(tc.rest), tc.name, []byte(tc.head), tc.size, tc.limit)
		if !errors.Is(err, tc.err) || (tc.err == nil && string(got) != tc.want) {
			t.Errorf("%s: %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}
