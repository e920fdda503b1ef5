package setup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestPinnedWheelsCoverTheSupportedVersions(t *testing.T) {
	var files []Wheel
	for name, sum := range PinnedWheels {
		if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			t.Errorf("%s: pin %q is not a lowercase hex sha256", name, sum)
		}
		files = append(files, Wheel{Filename: name})
	}
	for _, v := range []string{DefaultTorchVersion, AltTorchVersion} {
		w, ok := PickWheel(files, "torch", v, "cp311", "x86_64")
		if !ok {
			t.Errorf("no pinned torch %s wheel for cp311 x86_64", v)
			continue
		}
		if !strings.HasPrefix(w.Filename, "torch-"+v+"-cp311-") {
			t.Errorf("torch %s: picked %s", v, w.Filename)
		}
	}
}

// The Makefile's default for make test-libtorch and make bench is the pinned alternative version.
func TestMakefileAltTorchIsPinned(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ALT_TORCH \?= (\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile sets no ALT_TORCH default")
	}
	if string(m[1]) != AltTorchVersion {
		t.Errorf("Makefile ALT_TORCH = %s, setup.AltTorchVersion = %s", m[1], AltTorchVersion)
	}
}

func TestExpectedSHA256(t *testing.T) {
	const name = "demo-1.0-py3-none-manylinux1_x86_64.whl"
	pin := strings.Repeat("ab", 32)
	other := strings.Repeat("cd", 32)
	cases := []struct {
		desc         string
		pinned       bool
		index        string
		want, source string
		errSub       string
	}{
		{"pinned, index agrees", true, pin, pin, "the pin", ""},
		{"pinned, index agrees in upper case", true, strings.ToUpper(pin), pin, "the pin", ""},
		{"pinned, index publishes none", true, "", pin, "the pin", ""},
		{"pinned, index differs", true, other, "", "", "but it is pinned to " + pin},
		{"unpinned", false, other, other, "the index", ""},
		{"unpinned, no hash", false, "", "", "", "publishes no sha256"},
	}
	for _, c := range cases {
		t.Run(c.desc, func(t *testing.T) {
			if c.pinned {
				pinFor(t, name, pin)
			}
			w := Wheel{Filename: name, Hashes: map[string]string{}}
			if c.index != "" {
				w.Hashes["sha256"] = c.index
			}
			got, source, err := expectedSHA256(w)
			if c.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), c.errSub) {
					t.Fatalf("err = %v, want one containing %q", err, c.errSub)
				}
				return
			}
			if err != nil || got != c.want || source != c.source {
				t.Errorf("got %s from %q (err %v), want %s from %q", got, source, err, c.want, c.source)
			}
		})
	}
}

// A pinned wheel whose bytes differ from the pin is refused even when the index's hash matches them.
func TestFetchChecksThePin(t *testing.T) {
	body := []byte("bytes the index vouches for")
	sum := sha256.Sum256(body)
	ix, _ := fakeIndex(t, body, "") // the index publishes no hash: the pin alone decides
	pinFor(t, "demo-1.0-py3-none-manylinux1_x86_64.whl", hex.EncodeToString(sum[:]))
	if _, err := ix.Fetch(context.Background(), t.TempDir(), "demo", "1.0", "cp311", "x86_64"); err != nil {
		t.Fatalf("pinned fetch: %v", err)
	}

	swapped, _ := fakeIndex(t, []byte("substituted bytes"), "")
	dir := t.TempDir()
	_, err := swapped.Fetch(context.Background(), dir, "demo", "1.0", "cp311", "x86_64")
	if err == nil || !strings.Contains(err.Error(), "the pin says "+hex.EncodeToString(sum[:])) {
		t.Errorf("substituted wheel: err = %v, want a pin mismatch", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("a refused download left %d files", len(left))
	}
}

// pinFor pins name to sum for the duration of the test.
func pinFor(t *testing.T, name, sum string) {
	t.Helper()
	old, had := PinnedWheels[name]
	PinnedWheels[name] = sum
	t.Cleanup(func() {
		if had {
			PinnedWheels[name] = old
		} else {
			delete(PinnedWheels, name)
		}
	})
}
