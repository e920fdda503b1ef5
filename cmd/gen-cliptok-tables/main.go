// Command gen-cliptok-tables writes internal/cliptok/tables_gen.go: the reference tokenizer's answers
// where they differ from Go's tables. It runs in internal/cliptok: use `go generate ./internal/cliptok`
// after regenerating either input or changing the Go or golang.org/x/text version.
//
//   - From testdata/golden/text/unicode.json (written by reference/make_text_golden.py): where the
//     reference classifies (letter, number, space, other) or lower-cases a code point differently from
//     Go's unicode package.
//   - From internal/cliptok/testdata/nfc.json (written by internal/cliptok/testdata/probe_nfc.py, which
//     probes the reference's NFC and NFD normalisers): where the reference's canonical combining class
//     or canonical decomposition of a code point differs from golang.org/x/text/unicode/norm's, and
//     the composites x/text forms that the reference does not. It also checks the reference's
//     behaviour on runs of more than 30 combining marks: it must not insert U+034F (x/text's
//     stream-safe rule), which internal/cliptok's NFC relies on.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/format"
	"log"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// nfcProbe is internal/cliptok/testdata/nfc.json (see probe_nfc.py there).
type nfcProbe struct {
	CCC      [][3]int         `json:"ccc"`
	NFD      map[string][]int `json:"nfd"`
	Compose  [][2][]int       `json:"compose"`
	LongRuns [][2][]int       `json:"long_runs"`
}

func runes(cps []int) string {
	var b strings.Builder
	for _, c := range cps {
		b.WriteRune(rune(c))
	}
	return b.String()
}

func isHangul(r rune) bool { return r >= 0xAC00 && r <= 0xD7A3 }

func goCCC(r rune) uint8 { return norm.NFD.PropertiesString(string(r)).CCC() }

type cccRange struct {
	lo, hi rune
	ccc    uint8
}

// nfcTables returns the reference's combining classes where they differ from x/text's (over the
// code points the reference's NFD leaves alone: the others never reach canonical ordering), its
// full decompositions where they differ, and the composites x/text forms that it does not.
func nfcTables(p nfcProbe) ([]cccRange, map[rune]string, []rune) {
	refNFD := map[rune]string{}
	for k, v := range p.NFD {
		r, err := strconv.ParseInt(k, 16, 32)
		if err != nil {
			log.Fatalf("nfc.json: bad code point %q", k)
		}
		refNFD[rune(r)] = runes(v)
	}
	refCCC := map[rune]uint8{}
	for _, c := range p.CCC {
		for r := rune(c[0]); r <= rune(c[1]); r++ {
			refCCC[r] = uint8(c[2])
		}
	}
	var ccc []cccRange
	decomp := map[rune]string{}
	for r := rune(1); r <= unicode.MaxRune; r++ {
		if (r >= 0xD800 && r <= 0xDFFF) || isHangul(r) {
			continue
		}
		want, ok := refNFD[r]
		if !ok {
			want = string(r)
		}
		if got := norm.NFD.String(string(r)); got != want {
			decomp[r] = want
		}
		if ok {
			continue
		}
		if got, want := goCCC(r), refCCC[r]; got != want {
			if n := len(ccc); n > 0 && ccc[n-1].hi == r-1 && ccc[n-1].ccc == want {
				ccc[n-1].hi = r
			} else {
				ccc = append(ccc, cccRange{r, r, want})
			}
		}
	}
	var noCompose []rune
	for _, c := range p.Compose {
		in, want := runes(c[0]), runes(c[1])
		got := norm.NFC.String(in)
		if got == want {
			continue
		}
		r, n := utf8.DecodeRuneInString(got)
		if n != len(got) || want != norm.NFD.String(got) {
			log.Fatalf("nfc.json: the reference's NFC of %+q is %+q, x/text's %+q: not a composite the reference "+
				"leaves apart, which is all internal/cliptok can correct", in, want, got)
		}
		noCompose = append(noCompose, r)
	}
	sort.Slice(noCompose, func(i, j int) bool { return noCompose[i] < noCompose[j] })
	for _, lr := range p.LongRuns {
		if in, out := runes(lr[0]), runes(lr[1]); strings.Count(out, "\u034f") != strings.Count(in, "\u034f") {
			log.Fatalf("nfc.json: the reference's NFC of %+q inserts U+034F (the stream-safe rule); "+
				"internal/cliptok's NFC assumes it does not", in)
		}
	}
	return ccc, decomp, noCompose
}

// writeRuneMap writes the Go source of a map[rune]string variable, its keys in order.
func writeRuneMap(b *bytes.Buffer, name string, m map[rune]string, comment string) {
	fmt.Fprintf(b, "%svar %s = map[rune]string{\n", comment, name)
	for _, r := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(b, "\t0x%04X: %+q,\n", r, m[r])
	}
	fmt.Fprintf(b, "}\n\n")
}

type dump struct {
	Classes    [][3]any         `json:"classes"`
	Normalized map[string][]int `json:"normalized"`
}

func goClass(r rune) byte {
	switch {
	case unicode.Is(unicode.White_Space, r):
		return 'W'
	case unicode.IsLetter(r):
		return 'L'
	case unicode.IsNumber(r):
		return 'N'
	}
	return 'P'
}

func goNormalize(r rune) string {
	var b strings.Builder
	for _, c := range norm.NFC.String(string(r)) {
		switch {
		case unicode.Is(unicode.White_Space, c):
			b.WriteByte(' ')
		case c == 'İ':
			b.WriteString("i\u0307")
		default:
			b.WriteRune(unicode.ToLower(c))
		}
	}
	return b.String()
}

func main() {
	data, err := os.ReadFile("../../testdata/golden/text/unicode.json")
	if err != nil {
		log.Fatal(err)
	}
	var d dump
	if err := json.Unmarshal(data, &d); err != nil {
		log.Fatal(err)
	}
	data, err = os.ReadFile("testdata/nfc.json")
	if err != nil {
		log.Fatal(err)
	}
	var probe nfcProbe
	if err := json.Unmarshal(data, &probe); err != nil {
		log.Fatal(err)
	}
	cccs, decomp, noCompose := nfcTables(probe)
	type rng struct {
		lo, hi rune
		class  byte
	}
	var classes []rng
	for _, c := range d.Classes {
		lo, hi, cls := rune(c[0].(float64)), rune(c[1].(float64)), c[2].(string)[0]
		for r := lo; r <= hi; r++ {
			if r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			if goClass(r) == cls {
				continue
			}
			if n := len(classes); n > 0 && classes[n-1].hi == r-1 && classes[n-1].class == cls {
				classes[n-1].hi = r
			} else {
				classes = append(classes, rng{r, r, cls})
			}
		}
	}
	lower := map[rune]string{}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		want := string(r)
		if cps, ok := d.Normalized[strconv.FormatInt(int64(r), 16)]; ok {
			var b strings.Builder
			for _, c := range cps {
				b.WriteRune(rune(c))
			}
			want = b.String()
		}
		if goNormalize(r) == want {
			continue
		}
		if norm.NFC.String(string(r)) != string(r) {
			log.Fatalf("%U: the reference normalises it to %+q and Go to %+q, and NFC changes it: "+
				"a lower-case override cannot fix that", r, want, goNormalize(r))
		}
		lower[r] = want
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by cmd/gen-cliptok-tables from testdata/golden/text/unicode.json and "+
		"internal/cliptok/testdata/nfc.json; DO NOT EDIT.\n\n")
	fmt.Fprintf(&b, "package cliptok\n\n")
	fmt.Fprintf(&b, "// Go's unicode tables are Unicode %s; the reference tokenizer's letters, numbers, white space\n", unicode.Version)
	fmt.Fprintf(&b, "// and case mappings are newer, its NFC tables older (Unicode 9). These are the reference's\n")
	fmt.Fprintf(&b, "// answers where they differ.\n\n")
	fmt.Fprintf(&b, "// classOverrides: code point ranges whose class (L letter, N number, W space, P other) differs.\n")
	fmt.Fprintf(&b, "var classOverrides = []classRange{\n")
	for _, c := range classes {
		fmt.Fprintf(&b, "\t{0x%04X, 0x%04X, '%c'},\n", c.lo, c.hi, c.class)
	}
	fmt.Fprintf(&b, "}\n\n")
	writeRuneMap(&b, "lowerOverrides", lower, "// lowerOverrides: the lower-case mapping where it differs.\n")
	fmt.Fprintf(&b, "// cccOverrides: code point ranges whose canonical combining class differs from x/text's (marks\n")
	fmt.Fprintf(&b, "// newer than the reference's tables are starters there, class 0, and never reordered).\n")
	fmt.Fprintf(&b, "var cccOverrides = []cccRange{\n")
	for _, c := range cccs {
		fmt.Fprintf(&b, "\t{0x%04X, 0x%04X, %d},\n", c.lo, c.hi, c.ccc)
	}
	fmt.Fprintf(&b, "}\n\n")
	writeRuneMap(&b, "decompOverrides", decomp, "// decompOverrides: the full canonical decomposition where it "+
		"differs from x/text's (the code\n// point itself where the reference does not decompose it).\n")
	fmt.Fprintf(&b, "// noCompose: composites x/text's NFC forms that the reference's does not.\n")
	fmt.Fprintf(&b, "var noCompose = map[rune]bool{\n")
	for _, r := range noCompose {
		fmt.Fprintf(&b, "\t0x%04X: true,\n", r)
	}
	fmt.Fprintf(&b, "}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("tables_gen.go", src, 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("gen_tables: %d class ranges, %d lower-case overrides, %d combining-class ranges, %d decompositions, "+
		"%d composites left apart\n", len(classes), len(lower), len(cccs), len(decomp), len(noCompose))
}
