package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color/palette"
	"image/draw"
	"image/gif"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// paletted quantises the top-left w×h of the image file at path to the Plan 9 palette.
func paletted(t *testing.T, path string, w, h int) *image.Paletted {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src, _, err := image.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	m := image.NewPaletted(image.Rect(0, 0, w, h), palette.Plan9)
	draw.Draw(m, m.Rect, src, src.Bounds().Min, draw.Src)
	return m
}

func writeGIF(t *testing.T, path string, frames ...*image.Paletted) {
	t.Helper()
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, &gif.GIF{Image: frames, Delay: make([]int, len(frames))}); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, path, b.Bytes())
}

// allFramesRow is the -all-frames -json row.
type allFramesRow struct {
	File          string `json:"file"`
	Error         string `json:"error"`
	NSFW          *bool  `json:"nsfw"`
	SpecialCare   *bool  `json:"special_care"`
	FlaggedFrames []int  `json:"flagged_frames"`
	Frames        []struct {
		Index         int       `json:"index"`
		NSFW          bool      `json:"nsfw"`
		BadConcepts   []int     `json:"bad_concepts"`
		ConceptScores []float64 `json:"concept_scores"`
		SpecialScores []float64 `json:"special_scores"`
	} `json:"frames"`
}

// TestCLIAllFrames: with -all-frames an animated GIF whose second frame is the golden model's flagged
// image is flagged (its first frame, the default path's image, is not), each frame's scores equal
// those of that frame checked as a still GIF, -fail-on-nsfw exits 3, an APNG gets an error row, the
// table notes the flagged frames, and -pixels with -all-frames is a usage error.
func TestCLIAllFrames(t *testing.T) {
	dir := t.TempDir()
	safeFrame, flaggedFrame := paletted(t, safeImage, 180, 120), paletted(t, flaggedImage, 180, 120)
	anim, still0, still1 := filepath.Join(dir, "anim.gif"), filepath.Join(dir, "still0.gif"), filepath.Join(dir, "still1.gif")
	writeGIF(t, anim, safeFrame, flaggedFrame)
	writeGIF(t, still0, safeFrame)
	writeGIF(t, still1, flaggedFrame)
	apng := filepath.Join("..", "..", "internal", "imageproc", "testdata", "frames", "apng.png")

	// The default path: one row per input, the GIF's first frame only.
	code, recs, stderr := runCLI(t, "-model", goldenModel, "-json", "-q", "-device", "cpu", anim, still0, still1)
	if code != exitOK || len(recs) != 3 {
		t.Fatalf("exit %d, %d rows: %s", code, len(recs), stderr)
	}
	if *recs[0].NSFW || *recs[1].NSFW || !*recs[2].NSFW {
		t.Fatalf("default path: anim %v, still0 %v, still1 %v; want the flagged image flagged alone", *recs[0].NSFW, *recs[1].NSFW, *recs[2].NSFW)
	}

	var out, errb bytes.Buffer
	code = run([]string{"-model", goldenModel, "-json", "-q", "-device", "cpu", "-all-frames", anim, still1, apng}, &out, &errb)
	if code != exitFailed { // the APNG row is an error
		t.Fatalf("exit %d, want %d: %s", code, exitFailed, errb.String())
	}
	var rows []allFramesRow
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r allFramesRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		rows = append(rows, r)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3", len(rows))
	}
	a := rows[0]
	if a.File != anim || a.NSFW == nil || !*a.NSFW || !reflect.DeepEqual(a.FlaggedFrames, []int{1}) || len(a.Frames) != 2 {
		t.Fatalf("anim row: %+v", a)
	}
	for i, want := range []record{recs[1], recs[2]} {
		f := a.Frames[i]
		if f.Index != i || f.NSFW != *want.NSFW || !reflect.DeepEqual(f.ConceptScores, want.ConceptScores) ||
			!reflect.DeepEqual(f.SpecialScores, want.SpecialScores) || !reflect.DeepEqual(f.BadConcepts, want.BadConcepts) {
			t.Errorf("frame %d: %+v, want the still frame's %v %v", i, f, *want.NSFW, want.ConceptScores)
		}
	}
	if s := rows[1]; s.NSFW == nil || !*s.NSFW || len(s.Frames) != 1 {
		t.Errorf("still row: %+v", s)
	}
	if e := rows[2]; e.Error == "" || !strings.Contains(e.Error, "only the default image") || e.NSFW != nil || e.Frames != nil {
		t.Errorf("APNG row: %+v", e)
	}

	// -fail-on-nsfw: the animation alone is flagged through its second frame.
	if code, _, stderr := relRun(t, "-model", goldenModel, "-q", "-device", "cpu", "-all-frames", "-fail-on-nsfw", anim); code != exitFlagged {
		t.Errorf("-fail-on-nsfw: exit %d, want %d: %s", code, exitFlagged, stderr)
	}
	if code, _, _ := relRun(t, "-model", goldenModel, "-q", "-device", "cpu", "-fail-on-nsfw", anim); code != exitOK {
		t.Errorf("-fail-on-nsfw without -all-frames: exit %d, want %d (the first frame is clean)", code, exitOK)
	}
	// The table notes the frames.
	code, table, _ := relRun(t, "-model", goldenModel, "-q", "-device", "cpu", "-all-frames", anim)
	if code != exitOK || !strings.Contains(table, "NSFW") || !strings.Contains(table, "frames: 2, flagged [1]") {
		t.Errorf("table (exit %d):\n%s", code, table)
	}
	if code, _, stderr := relRun(t, "-model", goldenModel, "-all-frames", "-pixels", dir, anim); code != exitUsage || !strings.Contains(stderr, "-all-frames") {
		t.Errorf("-pixels with -all-frames: exit %d, %s", code, stderr)
	}
}
