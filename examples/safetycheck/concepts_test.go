package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

const (
	goldenModel = "../../testdata/golden/models/tiny_quickgelu"
	goldenText  = "../../testdata/golden/text/clip"
	goldenImage = "../../testdata/golden/images/rgb_300x200.png"
)

type customRecord struct {
	NSFW         bool `json:"nsfw"`
	CustomScores []struct {
		Name  string  `json:"name"`
		Cos   float64 `json:"cos"`
		Score float64 `json:"score"`
		Hit   bool    `json:"hit"`
	} `json:"custom_scores"`
}

func runCustom(t *testing.T, args ...string) (int, customRecord) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"-model", goldenModel, "-device", "cpu", "-json"}, args...), &out, &errb)
	var r customRecord
	if code == exitOK || code == exitFlagged {
		if err := json.Unmarshal(bytes.SplitN(out.Bytes(), []byte("\n"), 2)[0], &r); err != nil {
			t.Fatalf("bad JSON %q: %v (stderr %s)", out.String(), err, errb.String())
		}
	}
	return code, r
}

// TestCustomConcepts: -concept scores a text concept beside the built-in ones; it changes the verdict
// only with -concepts-count. rgb_300x200.png is safe for the built-in concepts of this model.
func TestCustomConcepts(t *testing.T) {
	args := []string{"-text-model", goldenText, "-concept", "low=-0.9:a photo of a weapon", "-concept", "high=0.9:a cat"}
	code, r := runCustom(t, append(args, goldenImage)...)
	if code != exitOK || r.NSFW {
		t.Fatalf("exit %d nsfw %v, want a safe verdict", code, r.NSFW)
	}
	if len(r.CustomScores) != 2 || r.CustomScores[0].Name != "low" || !r.CustomScores[0].Hit || r.CustomScores[1].Hit {
		t.Fatalf("custom scores %+v, want low hit and high not", r.CustomScores)
	}
	if _, r := runCustom(t, append(append(args, "-concepts-count"), goldenImage)...); !r.NSFW {
		t.Error("-concepts-count: a custom hit did not make the image NSFW")
	}
	for _, bad := range [][]string{
		{"-concept", "x=0.1:y", goldenImage},                                 // no -text-model
		{"-text-model", goldenText, "-concept", "no-threshold", goldenImage}, // malformed
	} {
		if code, _ := runCustom(t, bad...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, exitUsage)
		}
	}
}
