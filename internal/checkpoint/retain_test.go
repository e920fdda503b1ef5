package checkpoint

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// retainFile writes a small safetensors file with one F32 tensor "w" and opens it.
func retainFile(t *testing.T) (*File, []float32) {
	t.Helper()
	want := []float32{1, 2, 3, 4, 5, 6}
	path := writeTemp(t, "r.safetensors", stFile(t, map[string]any{"w": stEnt{"F32", []int64{2, 3}, []int64{0, 24}}}, f32Bytes(want...)))
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	return f, want
}

func TestRetainKeepsTheMappingUntilLastRelease(t *testing.T) {
	cases := []struct {
		name   string
		order  []string // "close", "r1", "r2": the order of Close and the releases
		mapped []bool   // whether the mapping is still there after each step
	}{
		{"close, then release", []string{"close", "r1"}, []bool{true, false}},
		{"release, then close", []string{"r1", "close"}, []bool{true, false}},
		{"two holders", []string{"r1", "close", "r2"}, []bool{true, true, false}},
		{"release twice counts once", []string{"r1", "r1", "close", "r2"}, []bool{true, true, true, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, want := retainFile(t)
			w, err := f.Tensor("w")
			if err != nil {
				t.Fatal(err)
			}
			releases := map[string]func() error{}
			for _, r := range []string{"r1", "r2"} {
				if slices.Contains(c.order, r) {
					if releases[r], err = f.Retain(); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i, step := range c.order {
				if step == "close" {
					err = f.Close()
				} else {
					err = releases[step]()
				}
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				if got := f.m.mmapped || f.m.data != nil; got != c.mapped[i] && runtime.GOOS != "windows" {
					t.Errorf("after %v: mapped = %v, want %v", c.order[:i+1], got, c.mapped[i])
				}
				if c.mapped[i] { // earlier Data is still readable while retained
					if got := mustFloat32(t, w); !slices.Equal(got, want) {
						t.Errorf("after %v: data = %v, want %v", c.order[:i+1], got, want)
					}
				}
			}
			if _, err := f.Tensor("w"); !errors.Is(err, ErrClosed) {
				t.Errorf("Tensor after Close: %v, want ErrClosed", err)
			}
		})
	}
}

func TestRetainAfterClose(t *testing.T) {
	f, _ := retainFile(t)
	f.Close()
	if _, err := f.Retain(); !errors.Is(err, ErrClosed) {
		t.Errorf("Retain after Close: %v, want ErrClosed", err)
	}
}

func TestAligned(t *testing.T) {
	// Back to back: an F16 tensor of 3 elements (6 bytes) shifts the F32 after it off 4-byte alignment.
	data := append([]byte{0, 0x3c, 0, 0x3c, 0, 0x3c}, f32Bytes(1, 2)...)
	data = append(data, 0, 0) // pad so that "c" starts on a multiple of 4
	data = append(data, f32Bytes(3)...)
	hdr := map[string]any{
		"a": stEnt{"F16", []int64{3}, []int64{0, 6}},
		"b": stEnt{"F32", []int64{2}, []int64{6, 14}},
		"c": stEnt{"F32", []int64{1}, []int64{16, 20}},
		"e": stEnt{"F32", []int64{0}, []int64{20, 20}},
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		t.Fatal(err)
	}
	for len(h)%8 != 0 { // as safetensors writes it: the header padded so that the data starts 8-aligned
		h = append(h, ' ')
	}
	f, err := OpenSafetensors(writeTemp(t, "a.safetensors", stRaw(h, data)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := uintptr(unsafe.Pointer(unsafe.SliceData(f.data)))
	if base%8 != 0 {
		t.Fatalf("data section at %#x: safetensors aligns it to 8 bytes", base)
	}
	cases := []struct {
		name  string
		align int
		want  bool
	}{
		{"a", 2, true}, {"a", 4, true}, {"b", 2, true}, {"b", 4, false}, {"c", 4, true}, {"c", 8, true},
		{"e", 64, true}, {"b", 1, true},
	}
	for _, c := range cases {
		tn, err := f.Tensor(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := tn.Aligned(c.align); got != c.want {
			t.Errorf("%s.Aligned(%d) = %v, want %v", c.name, c.align, got, c.want)
		}
	}
}

// The weight files the project ships keep every float tensor aligned to its element size, so they can
// be viewed without a copy; the full-size checkpoint is checked when it exists.
func TestShippedFilesAreElementAligned(t *testing.T) {
	paths, _ := filepath.Glob("../../testdata/golden/models/*/*.safetensors")
	if p := "../../bench-cache/fullsize/model/model.safetensors"; fileExists(p) {
		paths = append(paths, p)
	}
	if len(paths) == 0 {
		t.Fatal("no golden safetensors files found")
	}
	for _, p := range paths {
		f, err := OpenSafetensors(p)
		if err != nil {
			t.Fatal(err)
		}
		floats, ints := 0, 0
		for _, name := range f.Names() {
			tn, err := f.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tn.DType == F32 || tn.DType == F16 || tn.DType == BF16:
				floats++
				if !tn.Aligned(tn.DType.Size()) {
					t.Errorf("%s: %s (%s) is not aligned to %d bytes", p, name, tn.DType, tn.DType.Size())
				}
			case !tn.Aligned(tn.DType.Size()):
				ints++ // e.g. int64 position_ids after an odd number of float32s: copied, never viewed
			}
		}
		t.Logf("%s: %d float tensors aligned, %d integer tensors misaligned", p, floats, ints)
		f.Close()
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func mappingRSS(t *testing.T, start uintptr) int {
	t.Helper()
	fh, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("smaps: %v", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	in := false
	prefix := fmt.Sprintf("%x-", start)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "-") && !strings.Contains(line, ":") || strings.HasPrefix(line, prefix) {
			in = strings.HasPrefix(line, prefix)
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no mapping at %#x in smaps", start)
	return 0
}
