package imageproc

import (
	"bytes"
	"errors"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

// FuzzDecodePreprocess feeds arbitrary bytes through Decode and Preprocess: they must return an
// error or a well-formed result, never panic. Seeds: testdata/fuzz/FuzzDecodePreprocess plus small
// images of every format made here and the golden files.
//
//	go test ./internal/imageproc/ -run '^$' -fuzz FuzzDecodePreprocess -fuzztime 60s
func FuzzDecodePreprocess(f *testing.F) {
	src := pattern(13, 9, 4)
	var buf bytes.Buffer
	png.Encode(&buf, src)
	f.Add(append([]byte(nil), buf.Bytes()...))
	buf.Reset()
	jpeg.Encode(&buf, src, &jpeg.Options{Quality: 50})
	f.Add(append([]byte(nil), buf.Bytes()...))
	buf.Reset()
	gif.Encode(&buf, src, nil)
	f.Add(append([]byte(nil), buf.Bytes()...))
	buf.Reset()
	bmp.Encode(&buf, src)
	f.Add(append([]byte(nil), buf.Bytes()...))
	buf.Reset()
	tiff.Encode(&buf, src, nil)
	f.Add(append([]byte(nil), buf.Bytes()...))
	golden, _ := filepath.Glob(filepath.Join("testdata", "golden", "*"))
	for _, p := range golden {
		if strings.HasSuffix(p, ".pillow.png") {
			continue
		}
		if data, err := os.ReadFile(p); err == nil && len(data) < 8<<10 {
			f.Add(data)
		}
	}
	cfg := DefaultConfig()
	opts := &DecodeOptions{MaxPixels: 1 << 20, ApplyOrientation: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Decode(data, opts)
		if err != nil {
			return
		}
		if img.Width <= 0 || img.Height <= 0 || len(img.Pix) != img.Width*img.Height*3 {
			t.Fatalf("malformed result %dx%d with %d bytes", img.Width, img.Height, len(img.Pix))
		}
		if img.Width*img.Height > 1<<20 {
			t.Fatalf("%dx%d exceeds MaxPixels", img.Width, img.Height)
		}
		dst := make([]float32, 3*224*224)
		if err := cfg.Preprocess(img, dst); err != nil {
			t.Fatalf("Preprocess of a decoded image: %v", err)
		}
	})
}

// FuzzReadFile writes arbitrary bytes to a file and reads them back with ReadFile (the bounded,
// sniffing reader behind DecodeFile): it returns exactly the bytes written or one of the documented
// errors, and it refuses exactly the inputs Decode would refuse by their first bytes or size.
func FuzzReadFile(f *testing.F) {
	var buf bytes.Buffer
	png.Encode(&buf, pattern(3, 2, 1))
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Add([]byte("\xff\xd8"))
	f.Add([]byte("RIFF\x00\x00\x00\x00WEBPVP8 "))
	f.Add([]byte("not an image"))
	dir := f.TempDir()
	opts := &DecodeOptions{MaxPixels: 64} // a 16 MiB + 1 KiB file limit
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "input")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFile(path, opts)
		switch {
		case len(data) == 0:
			if !errors.Is(err, ErrEmptyImage) {
				t.Fatalf("empty file: %v, want ErrEmptyImage", err)
			}
		case Sniff(data) == "":
			if !errors.Is(err, ErrUnsupportedFormat) {
				t.Fatalf("unknown format: %v, want ErrUnsupportedFormat", err)
			}
		case err != nil:
			t.Fatalf("ReadFile of %d bytes of %s: %v", len(data), Sniff(data), err)
		case !bytes.Equal(got, data):
			t.Fatalf("ReadFile returned %d bytes, the file has %d", len(got), len(data))
		}
	})
}
