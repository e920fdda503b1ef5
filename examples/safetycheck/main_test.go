package main

import (
	"bytes"
	"encoding/json"
	"github.com/sdsafety/safety/internal/testbuild"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// Reliability tests of the command: broken inputs among good ones, broken and hostile models.
// (cli_test.go covers the JSON contract and the ordinary exit statuses.)

// relRun runs the command in-process and returns its exit code, stdout and stderr.
func relRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTestFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("test input (tracked by the repository): %v", err)
	}
	return b
}

func encodedPNG(t *testing.T, w, h int, c color.Color) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func twoFrameGIF(t *testing.T) []byte {
	t.Helper()
	frame := func(c color.Color) *image.Paletted {
		p := image.NewPaletted(image.Rect(0, 0, 30, 20), palette.Plan9)
		idx := uint8(p.Palette.Index(c))
		for i := range p.Pix {
			p.Pix[i] = idx
		}
		return p
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, &gif.GIF{
		Image: []*image.Paletted{frame(color.RGBA{255, 0, 0, 255}), frame(color.RGBA{0, 0, 255, 255})},
		Delay: []int{10, 10},
	}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// inputDir fills a directory with good golden images, valid oddities and broken files. It returns the
// directory and the names (sorted, as the command lists them) of the inputs that must fail.
func inputDir(t *testing.T) (dir string, bad []string) {
	t.Helper()
	dir = t.TempDir()
	pngData := readTestFile(t, filepath.Join(goldenImages, "sd_512x512.png"))
	jpegData := readTestFile(t, filepath.Join(goldenImages, "photo_320x240.jpg"))
	webpData := readTestFile(t, filepath.Join("..", "..", "internal", "imageproc", "testdata", "golden", "lossy.webp"))
	good := map[string][]byte{
		"sd_512x512.png":      pngData,
		"photo_320x240.jpg":   jpegData,
		"gray_64x64.png":      readTestFile(t, filepath.Join(goldenImages, "gray_64x64.png")),
		"one_pixel.png":       encodedPNG(t, 1, 1, color.NRGBA{200, 10, 10, 255}),
		"animated.gif":        twoFrameGIF(t),
		"lossy.webp":          webpData,
		"z_after_the_bad.png": encodedPNG(t, 300, 200, color.NRGBA{0, 90, 200, 255}),
	}
	broken := map[string][]byte{
		"empty.png":              nil,
		"text.png":               []byte("not an image at all\n"),
		"truncated.png":          pngData[:len(pngData)/2],
		"truncated.jpg":          jpegData[:len(jpegData)/2],
		"truncated.webp":         webpData[:len(webpData)/2],
		"huge_100000x100000.png": testbuild.PNGWithHeader(100000, 100000),
		"zero_0x0.png":           testbuild.PNGWithHeader(0, 0),
	}
	for name, data := range good {
		writeTestFile(t, filepath.Join(dir, name), data)
	}
	for name, data := range broken {
		writeTestFile(t, filepath.Join(dir, name), data)
		bad = append(bad, name)
	}
	sort.Strings(bad)
	return dir, bad
}

// TestCLIBadInputs checks one run over good, odd and broken inputs: every input gets one JSON line in
// order, a broken one holds only "file" and "error", the others (in the same batches) are checked,
// and the exit status is 1.
func TestCLIBadInputs(t *testing.T) {
	dir, bad := inputDir(t)
	missing := filepath.Join(dir, "does_not_exist.png")
	pixels := filepath.Join(t.TempDir(), "pixels")
	code, stdout, stderr := relRun(t, "-model", goldenModel, "-json", "-q", "-device", "cpu", "-batch", "3",
		"-pixels", pixels, dir, missing)
	if code != exitFailed {
		t.Errorf("exit status %d, want %d; stderr:\n%s", code, exitFailed, stderr)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range entries {
		want = append(want, filepath.Join(dir, e.Name()))
	}
	want = append(want, missing)

	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d JSON lines for %d inputs:\n%s", len(lines), len(want), stdout)
	}
	for i, line := range lines {
		var rec map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, line)
		}
		var file string
		if err := json.Unmarshal(rec["file"], &file); err != nil || file != want[i] {
			t.Errorf("line %d: file %s, want %q", i+1, rec["file"], want[i])
			continue
		}
		name := filepath.Base(file)
		isBad := slices.Contains(bad, name) || file == missing
		_, wrote := os.Stat(filepath.Join(pixels, name+".pixel_values.f32"))
		if isBad {
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range rec {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(keys, []string{"error", "file"}) {
				t.Errorf("%s: keys %v, want only file and error", name, keys)
			}
			if wrote == nil {
				t.Errorf("%s: pixel values written for a failed input", name)
			}
			continue
		}
		if _, hasErr := rec["error"]; hasErr {
			t.Errorf("%s: unexpected error %s", name, rec["error"])
			continue
		}
		var res struct {
			NSFW          *bool     `json:"nsfw"`
			ConceptScores []float64 `json:"concept_scores"`
		}
		if err := json.Unmarshal([]byte(line), &res); err != nil || res.NSFW == nil || len(res.ConceptScores) == 0 {
			t.Errorf("%s: no verdict or scores in %s", name, line)
		}
		if wrote != nil {
			t.Errorf("%s: no pixel values written: %v", name, wrote)
		}
	}
	// The reference's verdicts for the golden images that were mixed with the broken inputs.
	expected := readExpectedVerdicts(t)
	compared := 0
	for _, line := range lines {
		var rec struct {
			File        string `json:"file"`
			NSFW        bool   `json:"nsfw"`
			BadConcepts []int  `json:"bad_concepts"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		e, ok := expected[filepath.Base(rec.File)]
		if !ok {
			continue
		}
		compared++
		if e.NSFW != rec.NSFW || !slices.Equal(e.BadConcepts, rec.BadConcepts) {
			t.Errorf("%s: nsfw=%v bad=%v, the reference says nsfw=%v bad=%v", rec.File, rec.NSFW, rec.BadConcepts, e.NSFW, e.BadConcepts)
		}
	}
	if compared != 3 {
		t.Errorf("compared %d golden images with the reference's verdicts, want 3", compared)
	}
}

type verdict struct {
	NSFW        bool  `json:"nsfw"`
	BadConcepts []int `json:"bad_concepts"`
}

func readExpectedVerdicts(t *testing.T) map[string]verdict {
	t.Helper()
	var exp struct {
		Images []struct {
			File string `json:"file"`
			verdict
		} `json:"images"`
	}
	if err := json.Unmarshal(readTestFile(t, filepath.Join(goldenModel, "expected.json")), &exp); err != nil {
		t.Fatal(err)
	}
	out := map[string]verdict{}
	for _, im := range exp.Images {
		out[im.File] = im.verdict
	}
	return out
}

// TestCLITableReportsErrors checks the default (table) output: a broken input is an ERROR row on
// stdout and a message on stderr, the good ones are still checked, and the status is 1.
func TestCLITableReportsErrors(t *testing.T) {
	dir := t.TempDir()
	goodFile := filepath.Join(dir, "small.png")
	badFile := filepath.Join(dir, "broken.png")
	writeTestFile(t, goodFile, readTestFile(t, filepath.Join(goldenImages, "gray_64x64.png")))
	writeTestFile(t, badFile, []byte("GIF89a but not really"))
	code, stdout, stderr := relRun(t, "-model", goldenModel, "-q", "-device", "cpu", goodFile, badFile)
	if code != exitFailed {
		t.Errorf("exit status %d, want %d", code, exitFailed)
	}
	var goodRow, badRow string
	for _, line := range strings.Split(stdout, "\n") {
		switch {
		case strings.HasPrefix(line, goodFile):
			goodRow = line
		case strings.HasPrefix(line, badFile):
			badRow = line
		}
	}
	if !strings.Contains(goodRow, "safe") && !strings.Contains(goodRow, "NSFW") {
		t.Errorf("good input row %q has no verdict", goodRow)
	}
	if !strings.Contains(badRow, "ERROR") {
		t.Errorf("broken input row %q is not an ERROR", badRow)
	}
	if !strings.Contains(stderr, "safetycheck: "+badFile+":") {
		t.Errorf("stderr does not report the broken input:\n%s", stderr)
	}
}

// TestCLIFailureStatus checks the exit statuses of failures cli_test.go does not cover: a malformed
// or hostile model (1, and the pickle runs nothing), a broken input next to a flagged image (1: the
// failure wins over -fail-on-nsfw), invalid option values (2), -h (0).
func TestCLIFailureStatus(t *testing.T) {
	good := filepath.Join(goldenImages, "gray_64x64.png")
	flagged := flaggedImage
	empty := filepath.Join(t.TempDir(), "empty.png")
	writeTestFile(t, empty, nil)
	badModel := t.TempDir()
	writeTestFile(t, filepath.Join(badModel, "config.json"), []byte("{not json"))
	hostileModel := t.TempDir()
	if cfg, err := os.ReadFile(filepath.Join(goldenModel, "config.json")); err == nil {
		writeTestFile(t, filepath.Join(hostileModel, "config.json"), cfg)
	}
	writeTestFile(t, filepath.Join(hostileModel, "pytorch_model.bin"),
		readTestFile(t, filepath.Join("..", "..", "internal", "checkpoint", "testdata", "hostile_global.bin")))
	for _, tc := range []struct {
		name   string
		args   []string
		want   int
		stderr string // in stderr
	}{
		{"help", []string{"-h"}, exitOK, "usage"},
		{"unknown flag", []string{"-model", goldenModel, "-frobnicate", good}, exitUsage, "frobnicate"},
		{"bad device", []string{"-model", goldenModel, "-device", "tpu", good}, exitUsage, "tpu"},
		{"adjustment out of range", []string{"-model", goldenModel, "-adjustment", "7", good}, exitUsage, "adjustment"},
		{"malformed model", []string{"-model", badModel, good}, exitFailed, "bad checkpoint"},
		{"hostile model", []string{"-model", hostileModel, good}, exitFailed, "refused pickle"},
		{"broken input", []string{"-model", goldenModel, good, empty}, exitFailed, "empty.png"},
		{"flagged and broken input", []string{"-model", goldenModel, "-fail-on-nsfw", flagged, empty}, exitFailed, "empty.png"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const marker = "/tmp/checkpoint-pwned" // what the hostile pickle would create
			os.Remove(marker)
			args := append([]string{"-q", "-device", "cpu"}, tc.args...)
			code, _, stderr := relRun(t, args...)
			if code != tc.want {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.want, stderr)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr does not contain %q:\n%s", tc.stderr, stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("a hostile pickle ran a command")
			}
		})
	}
}
