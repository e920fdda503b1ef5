package safety

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// framesGIF encodes one w×h frame per colour, each frame filling the screen.
func framesGIF(t testing.TB, w, h int, colours ...color.RGBA) []byte {
	t.Helper()
	pal := color.Palette{}
	for _, c := range colours {
		pal = append(pal, c)
	}
	g := &gif.GIF{}
	for i := range colours {
		m := image.NewPaletted(image.Rect(0, 0, w, h), pal)
		for k := range m.Pix {
			m.Pix[k] = uint8(i)
		}
		g.Image = append(g.Image, m)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestCheckFrames: the all-frames methods give one result per frame, frame 0 equal to the default
// path's image and each later frame equal to that frame as a still image; CheckEncodedFrames (batch
// by batch) equals CheckPixels on PreprocessEncodedFrames; the file variants agree and name the file.
func TestCheckFrames(t *testing.T) {
	c := mustLoad(t, testModelDir, WithDevice(DeviceCPU), WithBatchSize(2))
	ctx := context.Background()
	red, green, blue := color.RGBA{255, 0, 0, 255}, color.RGBA{0, 255, 0, 255}, color.RGBA{0, 0, 255, 255}
	data := framesGIF(t, 40, 30, red, green, blue)
	pix, n, err := c.PreprocessEncodedFrames(data)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Info().ImageSize
	per := 3 * s * s
	if n != 3 || len(pix) != n*per {
		t.Fatalf("%d frames, %d values; want 3 frames of %d", n, len(pix), per)
	}
	first, err := c.PreprocessEncoded(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pix[:per], first) {
		t.Error("frame 0 differs from PreprocessEncoded's image")
	}
	for i, col := range []color.RGBA{red, green, blue} {
		still, err := c.PreprocessEncoded(framesGIF(t, 40, 30, col))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(pix[i*per:(i+1)*per], still) {
			t.Errorf("frame %d differs from a still image of its colour", i)
		}
	}
	want, err := c.CheckPixels(ctx, pix, n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.CheckEncodedFrames(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("CheckEncodedFrames differs from CheckPixels on PreprocessEncodedFrames")
	}
	if reflect.DeepEqual(got[0].ConceptScores, got[2].ConceptScores) {
		t.Error("frames 0 and 2 have the same scores: not checked separately")
	}
	path := filepath.Join(t.TempDir(), "anim.gif")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fromFile, err := c.CheckFileFrames(ctx, path)
	if err != nil || !reflect.DeepEqual(fromFile, want) {
		t.Errorf("CheckFileFrames: %v, equal %v", err, reflect.DeepEqual(fromFile, want))
	}
	filePix, fileN, err := c.PreprocessFileFrames(path)
	if err != nil || fileN != n || !reflect.DeepEqual(filePix, pix) {
		t.Errorf("PreprocessFileFrames: %d frames, %v", fileN, err)
	}
	// A still image is one frame.
	if _, n, err := c.PreprocessEncodedFrames(encodePNGBytes(t, solidImage(9, 7, red))); err != nil || n != 1 {
		t.Errorf("still PNG: %d frames, %v", n, err)
	}
}

// TestCheckFramesRefused: an animation bomb (more frames than WithMaxFrames), an APNG, a screen over
// WithMaxPixels, no data, a cancelled context, a closed checker and a bad option are refused with
// their errors, and an error names the file.
func TestCheckFramesRefused(t *testing.T) {
	c := mustLoad(t, testModelDir, WithDevice(DeviceCPU), WithMaxFrames(5), WithMaxPixels(2000))
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	tiny := func(n int) []byte {
		cols := make([]color.RGBA, n)
		for i := range cols {
			cols[i] = color.RGBA{uint8(i), 0, 0, 255}
		}
		return framesGIF(t, 1, 1, cols...)
	}
	apng, err := os.ReadFile(filepath.Join("internal", "imageproc", "testdata", "frames", "apng.png"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		ctx  context.Context
		data []byte
		want error
		text string
	}{
		{"6 frames, WithMaxFrames(5)", ctx, tiny(6), ErrImageTooLarge, "more than 5 frames"},
		{"APNG", ctx, apng, ErrAnimatedPNG, "only the default image"},
		{"60x40 screen, WithMaxPixels(2000)", ctx, framesGIF(t, 60, 40, color.RGBA{1, 2, 3, 255}), ErrImageTooLarge, "60x40"},
		{"no data", ctx, nil, ErrEmptyImage, ""},
		{"cancelled", cancelled, tiny(2), context.Canceled, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.CheckEncodedFrames(tc.ctx, tc.data)
			if !errors.Is(err, tc.want) || res != nil || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("CheckEncodedFrames: %d results, %v; want %v", len(res), err, tc.want)
			}
			if tc.ctx == ctx {
				pix, n, err := c.PreprocessEncodedFrames(tc.data)
				if !errors.Is(err, tc.want) || pix != nil || n != 0 {
					t.Errorf("PreprocessEncodedFrames: %d frames, %v; want %v", n, err, tc.want)
				}
			}
		})
	}
	if res, err := c.CheckEncodedFrames(ctx, tiny(5)); err != nil || len(res) != 5 {
		t.Errorf("5 frames, WithMaxFrames(5): %d results, %v", len(res), err)
	}
	path := filepath.Join(t.TempDir(), "bomb.gif")
	if err := os.WriteFile(path, tiny(6), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CheckFileFrames(ctx, path); !errors.Is(err, ErrImageTooLarge) || !strings.Contains(err.Error(), path) {
		t.Errorf("CheckFileFrames: %v, want ErrImageTooLarge naming %s", err, path)
	}
	if _, _, err := c.PreprocessFileFrames(filepath.Join(t.TempDir(), "missing.gif")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load(testModelDir, WithMaxFrames(0)); !errors.Is(err, ErrInvalidOption) {
		t.Errorf("WithMaxFrames(0): %v, want ErrInvalidOption", err)
	}
	closed := mustLoad(t, testModelDir, WithDevice(DeviceCPU))
	closed.Close()
	if _, err := closed.CheckEncodedFrames(ctx, tiny(2)); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v, want ErrClosed", err)
	}
}
