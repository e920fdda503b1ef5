#!/usr/bin/env python3
"""Probe the reference tokenizer's NFC and write nfc.json next to this script.

Run from the repository root with the reference environment:
    .venv/bin/python internal/cliptok/testdata/probe_nfc.py

CLIP's tokenizer (transformers 5's CLIPTokenizer, on the Hugging Face tokenizers library) normalises with NFC. Its
tables are not Go's (golang.org/x/text/unicode/norm), so cmd/gen-cliptok-tables corrects Go's answers with what this
script records, asking the tokenizers library's own NFC and NFD normalisers (the ones CLIP's normaliser sequence
uses), never a Unicode table:

  ccc        the canonical combining class of every code point the reference's NFD leaves alone, as runs
             [first, last, class] of the non-zero ones. A code point's class is found by where the reference's
             canonical ordering puts it next to marks of known order (see combining_class);
  nfd        the reference's NFD of every code point it changes (hex code point -> code points);
  compose    for every code point that Python's unicodedata (or the reference) decomposes: [that decomposition,
             the reference's NFC of it]; where the reference leaves the sequence apart, it does not compose it;
  long_runs  [input, the reference's NFC] for runs of more than 30 combining marks (the stream-safe limit).

Hangul syllables (U+AC00-U+D7A3) are left out of nfd and compose: the script checks that the reference decomposes and
composes them by the algorithm of the Unicode standard, as Go does.

Deterministic: two runs give byte-identical files.
"""
import json
import os
import sys
import unicodedata

import tokenizers
from tokenizers import normalizers

NFC, NFD = normalizers.NFC(), normalizers.NFD()
SEP = "\x00"  # a starter with no decomposition: probes joined by it do not interact
HERE = os.path.dirname(os.path.abspath(__file__))
# every code point but the surrogates and the separator (a control character: no decomposition, class 0)
CODE_POINTS = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]
LOW, HIGH = "\u0334", "\u0345"  # classes 1 and 240, the lowest and highest non-zero classes


def batch(norm, probes):
    """norm applied to each probe string, in one call."""
    assert not any(SEP in p for p in probes)
    out = norm.normalize_str(SEP.join(probes)).split(SEP)
    assert len(out) == len(probes), "a probe's output contains the separator"
    return out


def nonstarters(stable):
    """the code points of stable with a non-zero class: the reference reorders them past LOW or HIGH."""
    after_high = batch(NFD, ["a" + HIGH + chr(c) for c in stable])
    before_low = batch(NFD, ["a" + chr(c) + LOW for c in stable])
    return [c for c, x, y in zip(stable, after_high, before_low)
            if x == "a" + chr(c) + HIGH or y == "a" + LOW + chr(c)]


def combining_class(marks):
    """the reference's class of each code point of marks (all non-starters in the reference).

    Representatives: for each class value, the first code point that Python's unicodedata gives it and that the
    reference also treats as a non-starter; their order in the reference is checked against their values. A mark's
    class is the value of the representative the reference neither moves it before nor after.
    """
    reps = {}
    for c in marks:
        v = unicodedata.combining(chr(c))
        if v and v not in reps:
            reps[v] = c
    values = sorted(reps)
    for i, v in enumerate(values):  # the representatives' order in the reference is the order of their values
        for w in values[i + 1:]:
            a, b = chr(reps[v]), chr(reps[w])
            assert NFD.normalize_str("a" + b + a) == "a" + a + b, (v, w)
    out = {}
    for c in marks:
        probes = []
        for v in values:
            probes += ["a" + chr(reps[v]) + chr(c), "a" + chr(c) + chr(reps[v])]
        res = batch(NFD, probes)
        equal = [v for k, v in enumerate(values)
                 if res[2 * k] == "a" + chr(reps[v]) + chr(c) and res[2 * k + 1] == "a" + chr(c) + chr(reps[v])]
        assert len(equal) == 1, (hex(c), equal)
        out[c] = equal[0]
    return out


def runs(classes):
    out = []
    for c in sorted(classes):
        if out and out[-1][1] == c - 1 and out[-1][2] == classes[c]:
            out[-1][1] = c
        else:
            out.append([c, c, classes[c]])
    return out


def hangul(c):
    """the canonical decomposition of Hangul syllable c by the Unicode standard's algorithm."""
    s = c - 0xAC00
    lv, t = divmod(s, 28)
    out = chr(0x1100 + lv // 21) + chr(0x1161 + lv % 21)
    return out + (chr(0x11A7 + t) if t else "")


def is_hangul(c):
    return 0xAC00 <= c <= 0xD7A3


def cps(s):
    return [ord(x) for x in s]


def main():
    decomposed = batch(NFD, [chr(c) for c in CODE_POINTS])
    nfd = {c: d for c, d in zip(CODE_POINTS, decomposed) if d != chr(c)}
    syllables = [c for c in CODE_POINTS if is_hangul(c)]
    assert all(nfd[c] == hangul(c) for c in syllables), "the reference decomposes Hangul differently"
    assert batch(NFC, [hangul(c) for c in syllables]) == [chr(c) for c in syllables], "Hangul composes differently"
    stable = [c for c in CODE_POINTS if c not in nfd]
    classes = combining_class(nonstarters(stable))

    seqs = {}
    for c in CODE_POINTS:
        if is_hangul(c):
            continue
        d = unicodedata.normalize("NFD", chr(c))
        if d != chr(c):
            seqs[d] = None
        if c in nfd:
            seqs[nfd[c]] = None
    seqs = sorted(seqs, key=cps)
    compose = [[cps(s), cps(n)] for s, n in zip(seqs, batch(NFC, seqs))]

    long_inputs = [
        "x" + "\u0301" * 31,
        "x" + "\u0301" * 40,
        "x" + "\u0301" * 29 + "\u0316" * 5,  # a class-220 mark after 29 class-230 ones: sorted over the whole run
        "x" + ("\u0301\u0316\u0334") * 20,  # classes 230, 220, 1 mixed, 60 marks
        "e" + "\u0316" * 35 + "\u0301",  # the 0301 composes with e only when the run is sorted as one
    ]
    long_runs = [[cps(s), cps(NFC.normalize_str(s))] for s in long_inputs]

    out = {
        "tokenizers": tokenizers.__version__,
        "python_unicodedata": unicodedata.unidata_version,
        "ccc": runs(classes),
        "nfd": {f"{c:x}": cps(d) for c, d in sorted(nfd.items()) if not is_hangul(c)},
        "compose": compose,
        "long_runs": long_runs,
        "note": "written by probe_nfc.py from the tokenizers library's NFC and NFD normalisers; see its docstring",
    }
    with open(os.path.join(HERE, "nfc.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"probe_nfc: {len(classes)} non-starters in {len(out['ccc'])} runs, {len(out['nfd'])} decompositions, "
          f"{len(compose)} composition probes", file=sys.stderr)


if __name__ == "__main__":
    main()
