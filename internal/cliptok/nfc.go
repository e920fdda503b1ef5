package cliptok

import (
	"slices"
	"sort"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// NFC as the reference computes it.
//
// The reference (the tokenizers library's NFC normaliser) differs from golang.org/x/text's NFC in
// three ways, all recorded from the reference by testdata/probe_nfc.py and turned into the tables of
// tables_gen.go by cmd/gen-cliptok-tables:
//
//  1. It has no stream-safe rule: after 30 non-starters in a row x/text inserts U+034F and sorts each
//     side of it apart; the reference inserts nothing and sorts the whole run, so a mark after the
//     30th can still compose with the starter ("e" + U+0316×35 + U+0301 gives "é" + U+0316×35).
//  2. Its tables are Unicode 9: marks added since (U+1DF6–U+1DFA, U+1ABF–U+1ACE, U+0898–U+089F, …)
//     have combining class 0 there, so they are starters, never reordered ([cccOverrides]).
//  3. Decompositions added since do not exist there: U+11938 stays whole and U+11935 U+11930 stays
//     two characters ([decompOverrides], [noCompose]).
//
// Everything else (decompositions, classes, the composition pairs) comes from x/text.

// cccRange gives the canonical combining class of the code points lo..hi.
type cccRange struct {
	lo, hi rune
	ccc    uint8
}

// combiningClass returns the reference's canonical combining class of r.
func combiningClass(r rune) uint8 {
	if r < 0x300 {
		return 0
	}
	i := sort.Search(len(cccOverrides), func(i int) bool { return cccOverrides[i].hi >= r })
	if i < len(cccOverrides) && cccOverrides[i].lo <= r {
		return cccOverrides[i].ccc
	}
	var buf [utf8.UTFMax]byte
	return norm.NFD.Properties(utf8.AppendRune(buf[:0], r)).CCC()
}

// classed is a code point and its combining class.
type classed struct {
	r   rune
	ccc uint8
}

// appendDecomposed appends the reference's full canonical decomposition of r.
func appendDecomposed(out []classed, r rune) []classed {
	if r < 0xC0 { // nothing below U+00C0 decomposes
		return append(out, classed{r, 0})
	}
	if d, ok := decompOverrides[r]; ok {
		for _, c := range d {
			out = append(out, classed{c, combiningClass(c)})
		}
		return out
	}
	if r >= hangulFirst && r <= hangulLast { // the Unicode standard's algorithm; the same in x/text
		lv, t := (r-hangulFirst)/28, (r-hangulFirst)%28
		out = append(out, classed{0x1100 + lv/21, 0}, classed{0x1161 + lv%21, 0})
		if t != 0 {
			out = append(out, classed{0x11A7 + t, 0})
		}
		return out
	}
	var buf [utf8.UTFMax]byte
	d := norm.NFD.Properties(utf8.AppendRune(buf[:0], r)).Decomposition() // full, nil if none
	if d == nil {
		return append(out, classed{r, combiningClass(r)})
	}
	for len(d) > 0 {
		c, n := utf8.DecodeRune(d)
		out = append(out, classed{c, combiningClass(c)})
		d = d[n:]
	}
	return out
}

// The Hangul syllables.
const hangulFirst, hangulLast = 0xAC00, 0xD7A3

// composePair returns the primary composite of starter a and b, if the reference has one.
func composePair(a, b rune) (rune, bool) {
	if b < 0x300 { // no composition's second code point is below U+0300
		return 0, false
	}
	switch { // Hangul: the Unicode standard's algorithm
	case a >= 0x1100 && a <= 0x1112 && b >= 0x1161 && b <= 0x1175:
		return hangulFirst + ((a-0x1100)*21+b-0x1161)*28, true
	case a >= hangulFirst && a <= hangulLast && (a-hangulFirst)%28 == 0 && b >= 0x11A8 && b <= 0x11C2:
		return a + b - 0x11A7, true
	}
	c, ok := compositions()[[2]rune{a, b}]
	return c, ok
}

// compositions returns the reference's primary composites by their pair (starter, next code
// point), Hangul aside: x/text's, less [noCompose]. Built on first use (940 pairs, about 25 ms on
// a 2-core x86-64 machine), when a text that is not already in NFC first comes.
var compositions = sync.OnceValue(func() map[[2]rune]rune {
	pairs := map[[2]rune]rune{}
	var buf [utf8.UTFMax]byte
	for r := rune(0xC0); r <= unicode.MaxRune; r++ {
		if (r >= hangulFirst && r <= hangulLast) || (r >= 0xD800 && r <= 0xDFFF) || noCompose[r] {
			continue
		}
		enc := utf8.AppendRune(buf[:0], r)
		d := norm.NFD.Properties(enc).Decomposition()
		if utf8.RuneCount(d) < 2 || !norm.NFC.IsNormal(enc) {
			continue // no decomposition, a singleton, or a composition exclusion
		}
		// r's canonical mapping is a pair (its first half possibly composite itself): the NFC of its
		// full decomposition without the last code point, and that code point.
		last, n := utf8.DecodeLastRune(d)
		first := []rune(norm.NFC.String(string(d[:len(d)-n])))
		if len(first) != 1 || norm.NFC.String(string([]rune{first[0], last})) != string(r) {
			continue // not a primary composite of that pair (the tests compare every composition)
		}
		pairs[[2]rune{first[0], last}] = r
	}
	return pairs
})

// nfc returns the reference's NFC of s: full canonical decomposition, canonical ordering of each
// whole run of non-starters (stable, by class), then canonical composition.
func nfc(s string) string {
	ascii := true
	for i := 0; i < len(s) && ascii; i++ {
		ascii = s[i] < utf8.RuneSelf
	}
	if ascii || norm.NFC.IsNormalString(s) {
		// x/text's tables know every composition, decomposition and non-starter of the reference's
		// (same values), and more: a string they leave alone is one the reference leaves alone.
		return s
	}
	cps := make([]classed, 0, len(s))
	for _, r := range s {
		cps = appendDecomposed(cps, r)
	}
	for i := 0; i < len(cps); {
		if cps[i].ccc == 0 {
			i++
			continue
		}
		j := i + 1
		for j < len(cps) && cps[j].ccc != 0 {
			j++
		}
		slices.SortStableFunc(cps[i:j], func(a, b classed) int { return int(a.ccc) - int(b.ccc) })
		i = j
	}
	// Composition: a code point composes with the last starter unless blocked, i.e. unless something
	// between them is a starter or has a class at least its own.
	out := make([]rune, 0, len(cps))
	starter := -1     // index in out of the last starter, −1 before the first
	var lastCCC uint8 // class of out's last code point when it is not the starter
	for _, c := range cps {
		if starter >= 0 && (len(out)-1 == starter || (lastCCC != 0 && lastCCC < c.ccc)) {
			if comp, ok := composePair(out[starter], c.r); ok {
				out[starter] = comp
				continue
			}
		}
		if c.ccc == 0 {
			starter = len(out)
		}
		lastCCC = c.ccc
		out = append(out, c.r)
	}
	return string(out)
}
