package cliptok

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

func fromCodePoints(cps []int) string {
	var b strings.Builder
	for _, c := range cps {
		b.WriteRune(rune(c))
	}
	return b.String()
}

func readTestJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestNFCGolden compares the NFC, the normalised text and the token ids with the reference's on
// strings where x/text's NFC differs from it (runs of more than 30 marks, marks newer than
// Unicode 9 next to older ones, U+11935 U+11930 and U+11938) and on some where the two agree
// (testdata/nfc_golden.json, written by testdata/make_nfc_golden.py).
func TestNFCGolden(t *testing.T) {
	var g struct {
		Cases []struct {
			Text, NFC, Normalized []int
			Why                   string
			IDs                   []int `json:"ids"`
			ContentIDs            []int `json:"content_ids"`
		}
	}
	readTestJSON(t, filepath.Join("testdata", "nfc_golden.json"), &g)
	if len(g.Cases) < 30 {
		t.Fatalf("%d golden cases, want at least 30", len(g.Cases))
	}
	tok, err := Load(filepath.Join(goldenDir, "clip"))
	if err != nil {
		t.Fatal(err)
	}
	differsFromXText := 0
	for _, c := range g.Cases {
		s := fromCodePoints(c.Text)
		t.Run(c.Why, func(t *testing.T) {
			if want := fromCodePoints(c.NFC); nfc(s) != want {
				t.Errorf("nfc(%+q) = %+q, want %+q", s, nfc(s), want)
			}
			if norm.NFC.String(s) != fromCodePoints(c.NFC) {
				differsFromXText++
			}
			if got, want := normalize(s), fromCodePoints(c.Normalized); got != want {
				t.Errorf("normalize(%+q) = %+q, want %+q", s, got, want)
			}
			e := tok.Encode(s, 77)
			if !slices.Equal(e.IDs, c.IDs) || e.Tokens != len(c.ContentIDs) {
				t.Errorf("Encode(%+q) = %v (%d tokens), want %v (%d)", s, e.IDs, e.Tokens, c.IDs, len(c.ContentIDs))
			}
			if got := tok.Tokens(s); !slices.Equal(got, c.ContentIDs) {
				t.Errorf("Tokens(%+q) = %v, want %v", s, got, c.ContentIDs)
			}
		})
	}
	// The golden set must exercise the differences, or it tests nothing x/text would not pass.
	if differsFromXText < 20 {
		t.Errorf("x/text's NFC differs from the reference on %d golden strings, want at least 20", differsFromXText)
	}
}

// TestNFCSequences checks the three differences from x/text's NFC on sequences built here; each
// want is the reference's NFC of the input (checked with tokenizers 0.22.2 when written).
func TestNFCSequences(t *testing.T) {
	acute := strings.Repeat("\u0301", 31)
	tests := []struct {
		name, in, want string
	}{
		{"31 marks: no U+034F", "x" + acute, "x" + acute},
		{"200 marks: no U+034F", "x" + strings.Repeat("\u0301", 200), "x" + strings.Repeat("\u0301", 200)},
		{"a long mixed run sorts as one", "x" + strings.Repeat("\u0301\u0316", 20),
			"x" + strings.Repeat("\u0316", 20) + strings.Repeat("\u0301", 20)},
		{"composes past the 30th mark", "e" + strings.Repeat("\u0316", 40) + "\u0301",
			"\u00e9" + strings.Repeat("\u0316", 40)},
		{"U+1DF6 is a starter: not reordered, blocks é", "e\u1df6\u0301", "e\u1df6\u0301"},
		{"U+1ACE is a starter: each side sorts apart", "a\u0301\u0316\u1ace\u0301\u0316",
			"\u00e1\u0316\u1ace\u0316\u0301"},
		{"U+0C3C after a virama stays there", "\u0c15\u0c4d\u0c3c", "\u0c15\u0c4d\u0c3c"},
		{"Unicode 9 marks still reorder (Adlam nukta, class 7)", "\U0001E900\u0316\U0001E94A",
			"\U0001E900\U0001E94A\u0316"},
		{"U+11935 U+11930 stays apart", "\U00011935\U00011930", "\U00011935\U00011930"},
		{"U+11938 is not split", "\U00011938", "\U00011938"},
		{"U+11938 among letters", "a\U00011938\u0301", "a\U00011938\u0301"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nfc(tt.in); got != tt.want {
				t.Errorf("nfc(%+q) = %+q, want %+q", tt.in, got, tt.want)
			}
		})
	}
}

// TestNFCProbe checks every recorded answer of the reference's NFC and NFD
// (testdata/nfc.json, written by testdata/probe_nfc.py): the combining class of every code point it
// does not decompose, the composition of every decomposition, and the long runs.
func TestNFCProbe(t *testing.T) {
	var p struct {
		CCC      [][3]int         `json:"ccc"`
		NFD      map[string][]int `json:"nfd"`
		Compose  [][2][]int       `json:"compose"`
		LongRuns [][2][]int       `json:"long_runs"`
	}
	readTestJSON(t, filepath.Join("testdata", "nfc.json"), &p)
	refCCC := map[rune]uint8{}
	for _, c := range p.CCC {
		for r := rune(c[0]); r <= rune(c[1]); r++ {
			refCCC[r] = uint8(c[2])
		}
	}
	decomposed := map[rune]bool{}
	for k, v := range p.NFD {
		r, err := strconv.ParseInt(k, 16, 32)
		if err != nil {
			t.Fatal(err)
		}
		decomposed[rune(r)] = true
		var got []classed
		if got = appendDecomposed(got, rune(r)); len(got) != len(v) {
			t.Errorf("decomposition of %U: %d code points, want %d", r, len(got), len(v))
			continue
		}
		for i := range got {
			if got[i].r != rune(v[i]) {
				t.Errorf("decomposition of %U: %v, want %U", r, got, v)
				break
			}
		}
	}
	bad := 0
	for r := rune(1); r <= 0x10FFFF; r++ {
		if (r >= 0xD800 && r <= 0xDFFF) || (r >= 0xAC00 && r <= 0xD7A3) || decomposed[r] {
			continue
		}
		if got, want := combiningClass(r), refCCC[r]; got != want {
			if bad++; bad <= 10 {
				t.Errorf("combiningClass(%U) = %d, want %d", r, got, want)
			}
		}
	}
	if len(p.Compose) < 1900 || len(p.LongRuns) == 0 {
		t.Fatalf("%d composition probes and %d long runs: the probe file is incomplete", len(p.Compose), len(p.LongRuns))
	}
	for _, c := range append(p.Compose, p.LongRuns...) {
		in, want := fromCodePoints(c[0]), fromCodePoints(c[1])
		if got := nfc(in); got != want {
			if bad++; bad <= 20 {
				t.Errorf("nfc(%+q) = %+q, want %+q", in, got, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d differences (run go generate ./internal/cliptok after changing x/text or the probe file)", bad)
	}
}

// TestNFCAgreesWithXText checks nfc against x/text's NFC on random strings that avoid the three
// differences (code points of the override tables, runs longer than 30 marks): the composition
// algorithm, the ordering and the fast path must give x/text's answers there.
func TestNFCAgreesWithXText(t *testing.T) {
	var pool []rune
	for _, rg := range [][2]rune{
		{'a', 'e'}, {'A', 'E'}, {0xC0, 0x17F}, {0x300, 0x36F}, {0x391, 0x3C9}, {0x591, 0x5C7}, {0x610, 0x61A},
		{0x64B, 0x65F}, {0x915, 0x94D}, {0xB3C, 0xB57}, {0xDCA, 0xDDF}, {0xF71, 0xF81}, {0x1100, 0x1112},
		{0x1161, 0x1175}, {0x11A8, 0x11C2}, {0x1DC0, 0x1DF5}, {0x1E00, 0x1E0F}, {0x1F00, 0x1F0F}, {0x1F80, 0x1FAF},
		{0x20D0, 0x20F0}, {0x2126, 0x212B}, {0x304B, 0x309A}, {0xAC00, 0xAC1F}, {0xFB1D, 0xFB4E},
		{0x110B9, 0x110BA}, {0x1D15E, 0x1D169}, {0x11930, 0x11937},
	} {
		for r := rg[0]; r <= rg[1]; r++ {
			if _, ok := decompOverrides[r]; !ok && !noCompose[r] {
				pool = append(pool, r)
			}
		}
	}
	rng := rand.New(rand.NewPCG(14, 15))
	n := 0
	for i := 0; i < 20000; i++ {
		rs := make([]rune, 1+rng.IntN(10)) // at most 10 code points of at most 3 marks each: runs ≤ 30
		for k := range rs {
			rs[k] = pool[rng.IntN(len(pool))]
		}
		s := string(rs)
		if strings.Contains(s, "\U00011935") && strings.Contains(s, "\U00011930") {
			continue // the composition the reference does not have
		}
		n++
		if got, want := nfc(s), norm.NFC.String(s); got != want {
			t.Fatalf("nfc(%+q) = %+q, x/text gives %+q", s, got, want)
		}
	}
	if n < 19000 {
		t.Errorf("only %d strings compared", n)
	}
}

// BenchmarkNFC times nfc against x/text's NFC (what normalize used before) on a prompt that is
// already NFC (the fast path, nearly every prompt), a decomposed one and a long run of marks.
func BenchmarkNFC(b *testing.B) {
	inputs := []struct{ name, s string }{
		{"ascii", "a photo of an astronaut riding a horse on the moon, highly detailed, 8k"},
		{"decomposed", "cafe\u0301 na\u0131\u0308ve re\u0301sume\u0301 A\u030angstro\u0308m Tie\u0302\u0301ng Vie\u0323\u0302t"},
		{"long run", "x" + strings.Repeat("\u0301\u0316", 40)},
	}
	for _, in := range inputs {
		b.Run(in.name+"/nfc", func(b *testing.B) {
			for b.Loop() {
				_ = nfc(in.s)
			}
		})
		b.Run(in.name+"/x-text", func(b *testing.B) {
			for b.Loop() {
				_ = norm.NFC.String(in.s)
			}
		})
	}
}
