package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCLIRowsNameEveryInput covers issue 13 item 9: file names that are not UTF-8 stay distinct in
// -json rows, what a directory holds and is not checked is listed on stderr, .jfif files are checked,
// and -pixels refuses two inputs that would write the same pixels file.
func TestCLIRowsNameEveryInput(t *testing.T) {
	img := readTestFile(t, goldenImage)
	jpg := readTestFile(t, "../../testdata/golden/images/photo_320x240.jpg")
	dir := t.TempDir()
	bad1, bad2 := "a\xff.png", "a\xfe.png" // both print as "a\uFFFD.png"
	for name, data := range map[string][]byte{bad1: img, bad2: img, "photo.jfif": jpg, "notes.txt": []byte("hi")} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Skipf("this file system does not take the name %q: %v", name, err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "sub", "inner.png"), img)

	code, stdout, stderr := runWithin(t, time.Minute, "-q", "-json", "-model", goldenModel, dir)
	if code != exitOK {
		t.Fatalf("exit status %d, stderr %s", code, stderr)
	}
	files, errs := jsonRows(t, stdout)
	if len(files) != 3 {
		t.Fatalf("%d rows, want 3 (two non-UTF-8 names and the .jfif): %s", len(files), stdout)
	}
	for _, e := range errs {
		if e != "" {
			t.Errorf("a row has error %q", e)
		}
	}
	// Both non-UTF-8 names print as the same "file"; file_base64 tells them apart losslessly.
	var decoded []string
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if i := strings.Index(line, `"file_base64":"`); i >= 0 {
			enc := line[i+len(`"file_base64":"`):]
			enc = enc[:strings.IndexByte(enc, '"')]
			b, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				t.Fatal(err)
			}
			decoded = append(decoded, string(b))
		}
	}
	want := []string{filepath.Join(dir, bad2), filepath.Join(dir, bad1)} // sorted: \xfe < \xff
	if strings.Join(decoded, "|") != strings.Join(want, "|") {
		t.Errorf("file_base64 names %q, want %q", decoded, want)
	}
	if !strings.Contains(stderr, "skipped 2 entries") || !strings.Contains(stderr, `"notes.txt"`) || !strings.Contains(stderr, `"sub/"`) {
		t.Errorf("stderr %q: want the skipped notes.txt and sub/ listed", stderr)
	}

	// -pixels: two inputs named x.png in different directories would write the same file.
	d1, d2 := t.TempDir(), t.TempDir()
	writeTestFile(t, filepath.Join(d1, "x.png"), img)
	writeTestFile(t, filepath.Join(d2, "x.png"), img)
	code, _, stderr = runWithin(t, time.Minute, "-q", "-json", "-pixels", t.TempDir(), "-model", goldenModel, d1, d2)
	if code != exitUsage || !strings.Contains(stderr, "would both write x.png.pixel_values.f32") {
		t.Errorf("-pixels with two x.png: exit %d, stderr %q; want a usage error naming the clash", code, stderr)
	}
}
