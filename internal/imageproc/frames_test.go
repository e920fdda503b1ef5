package imageproc

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoldenFrames composites every frame of the GIFs of testdata/frames (see make_frames.py: each
// disposal method, transparency, offsets, local tables, interlacing, the sticky disposal) and requires
// exactly the pixels Pillow 13 shows for im.seek(i); im.convert("RGB").
func TestGoldenFrames(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "frames", "*.gif"))
	if len(files) < 5 {
		t.Fatalf("only %d GIFs in testdata/frames", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want, err := DecodeFile(path+".frames.png", nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []*RGB
			n, err := DecodeFrames(data, nil, func(i int, img *RGB) error {
				if i != len(got) {
					t.Errorf("frame index %d, want %d", i, len(got))
				}
				got = append(got, img)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != len(got) || n < 3 {
				t.Fatalf("returned %d, called with %d frames", n, len(got))
			}
			w, h := got[0].Width, got[0].Height
			if want.Width != w || want.Height != n*h {
				t.Fatalf("Pillow's stack is %dx%d, want %d frames of %dx%d", want.Width, want.Height, n, w, h)
			}
			for i, g := range got {
				ref := want.Pix[i*3*w*h : (i+1)*3*w*h]
				if d := countDiff(g.Pix, ref); d != 0 {
					t.Errorf("frame %d: %d of %d samples differ from Pillow (max %d)", i, d, len(ref), maxAbsDiff(g.Pix, ref))
				}
			}
			// Frame 0 is what Decode returns.
			first, err := Decode(data, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first.Pix, got[0].Pix) {
				t.Error("frame 0 differs from Decode's image")
			}
		})
	}
}

// tinyGIF encodes n 1×1 frames (an "animation bomb" when n is large).
func tinyGIF(t testing.TB, n int) []byte {
	t.Helper()
	return tinyGIFScreen(t, n, 1, 1)
}

// tinyGIFScreen encodes n 1×1 frames on a w×h logical screen.
func tinyGIFScreen(t testing.TB, n, w, h int) []byte {
	t.Helper()
	pal := color.Palette{color.RGBA{255, 0, 0, 255}, color.RGBA{0, 0, 255, 255}}
	g := &gif.GIF{Config: image.Config{Width: w, Height: h, ColorModel: pal}}
	for i := range n {
		m := image.NewPaletted(image.Rect(0, 0, 1, 1), pal)
		m.Pix[0] = uint8(i % 2)
		g.Image = append(g.Image, m)
		g.Delay = append(g.Delay, 0)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDecodeFramesBounds: an input with more frames than MaxFrames, or a screen over MaxPixels, is
// refused with ErrTooLarge before fn sees any frame, and one cut inside a frame with
// io.ErrUnexpectedEOF (a missing trailer is fine); an APNG is refused with ErrAnimatedPNG; a still
// image gives one frame; fn's error stops the walk.
func TestDecodeFramesBounds(t *testing.T) {
	apng, err := os.ReadFile(filepath.Join("testdata", "frames", "apng.png"))
	if err != nil {
		t.Fatal(err)
	}
	still := encodePNG(t, pattern(5, 4, 1))
	stop := errors.New("stop")
	cases := []struct {
		name    string
		data    []byte
		opts    *DecodeOptions
		fn      func(int, *RGB) error
		frames  int
		wantErr error
		errText string
	}{
		{"1001 frames, default limit", tinyGIF(t, 1001), nil, nil, 0, ErrTooLarge, "more than 1000 frames"},
		{"11 frames, limit 10", tinyGIF(t, 11), &DecodeOptions{MaxFrames: 10}, nil, 0, ErrTooLarge, "more than 10 frames"},
		{"10 frames, limit 10", tinyGIF(t, 10), &DecodeOptions{MaxFrames: 10}, nil, 10, nil, ""},
		{"1000 frames, default limit", tinyGIF(t, 1000), nil, nil, 1000, nil, ""},
		{"screen over MaxPixels", gifOf(t, 40, 30), &DecodeOptions{MaxPixels: 1000}, nil, 0, ErrTooLarge, "40x30"},
		{"frames x screen over 10 x MaxPixels", tinyGIFScreen(t, 11, 10, 10), &DecodeOptions{MaxPixels: 100}, nil, 0, ErrTooLarge, "11 frames of 10x10"},
		{"frames x screen at 10 x MaxPixels", tinyGIFScreen(t, 10, 10, 10), &DecodeOptions{MaxPixels: 100}, nil, 10, nil, ""},
		{"1000 1x1 frames on a 10000x10000 screen", tinyGIFScreen(t, 1000, 10000, 10000), nil, nil, 0, ErrTooLarge, "more than 1000000000"},
		{"APNG", apng, nil, nil, 0, ErrAnimatedPNG, "only the default image"},
		{"still PNG", still, nil, nil, 1, nil, ""},
		{"fn error", tinyGIF(t, 5), nil, func(i int, _ *RGB) error {
			if i == 2 {
				return stop
			}
			return nil
		}, 2, stop, ""},
		{"last frame cut short", func() []byte { d := tinyGIF(t, 3); return d[:len(d)-4] }(), nil, nil, 0, io.ErrUnexpectedEOF, "frame 2 is cut short"},
		{"no trailer", func() []byte { d := tinyGIF(t, 3); return d[:len(d)-1] }(), nil, nil, 3, nil, ""},
		{"not an image", []byte("hello, world"), nil, nil, 0, ErrUnsupportedFormat, ""},
		{"no data", nil, nil, nil, 0, ErrEmptyImage, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			fn := tc.fn
			if fn == nil {
				fn = func(int, *RGB) error { return nil }
			}
			n, err := DecodeFrames(tc.data, tc.opts, func(i int, img *RGB) error {
				calls++
				if img == nil || img.Width <= 0 || len(img.Pix) != 3*img.Width*img.Height {
					t.Errorf("frame %d: bad image", i)
				}
				return fn(i, img)
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("error %q does not say %q", err, tc.errText)
			}
			if n != tc.frames {
				t.Errorf("%d frames, want %d", n, tc.frames)
			}
			if (tc.wantErr == ErrTooLarge || tc.wantErr == io.ErrUnexpectedEOF) && calls != 0 {
				t.Errorf("fn called %d times before the refusal", calls)
			}
		})
	}
	if _, err := DecodeFrames(still, nil, nil); err == nil {
		t.Error("nil fn accepted")
	}
	// The APNG's default image still decodes through Decode.
	if img, err := Decode(apng, nil); err != nil || img.Pix[0] != 200 || img.Pix[2] != 10 {
		t.Errorf("APNG default image: %v", err)
	}
}

// gifOf encodes a one-frame w×h GIF.
func gifOf(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	m := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White})
	if err := gif.Encode(&b, m, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDecodeFramesOffscreen: a frame that extends past the logical screen is refused with an error
// naming the frame (image/gif's rule; Pillow would grow the canvas).
func TestDecodeFramesOffscreen(t *testing.T) {
	data := tinyGIF(t, 3)
	// Move frame 1's descriptor to x = 1 on the 1×1 screen.
	frames, _, err := gifScan(data, 10)
	if err != nil || len(frames) != 3 {
		t.Fatalf("scan: %d frames, %v", len(frames), err)
	}
	bad := append([]byte(nil), data...)
	bad[frames[1].start+1] = 1
	n, err := DecodeFrames(bad, nil, func(int, *RGB) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "frame 1") || n != 1 {
		t.Fatalf("n=%d err=%v, want an error naming frame 1 after one frame", n, err)
	}
}

// FuzzDecodeFrames feeds arbitrary bytes to DecodeFrames: it must return an error or well-formed
// frames, all the size of the first, never more than MaxFrames, and never panic. Seeds: the GIFs of
// testdata/frames and a few tiny animations.
//
//	go test ./internal/imageproc/ -run '^$' -fuzz FuzzDecodeFrames -fuzztime 60s
func FuzzDecodeFrames(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "frames", "*"))
	for _, p := range files {
		if strings.HasSuffix(p, ".frames.png") {
			continue
		}
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add(tinyGIF(f, 3))
	f.Add(gifOf(f, 7, 5))
	opts := &DecodeOptions{MaxPixels: 1 << 16, MaxFrames: 50}
	f.Fuzz(func(t *testing.T, data []byte) {
		var w, h, calls int
		n, err := DecodeFrames(data, opts, func(i int, img *RGB) error {
			if i != calls {
				t.Fatalf("frame %d after %d calls", i, calls)
			}
			calls++
			if i == 0 {
				w, h = img.Width, img.Height
			}
			if img.Width != w || img.Height != h || w <= 0 || h <= 0 || len(img.Pix) != 3*w*h {
				t.Fatalf("frame %d: %dx%d with %d bytes, frame 0 is %dx%d", i, img.Width, img.Height, len(img.Pix), w, h)
			}
			if w*h > 1<<16 {
				t.Fatalf("%dx%d exceeds MaxPixels", w, h)
			}
			return nil
		})
		if err == nil && (n != calls || n == 0) {
			t.Fatalf("returned %d frames after %d calls, no error", n, calls)
		}
		if n > 50 || calls > 50 {
			t.Fatalf("%d frames, MaxFrames is 50", n)
		}
	})
}
