#!/usr/bin/env python3
"""Write nfc_golden.json next to this script: the reference's NFC, normalised text and token ids for strings that
exercise where its NFC differs from golang.org/x/text's (see probe_nfc.py and internal/cliptok/nfc.go).

Run from the repository root with the reference environment:
    .venv/bin/python internal/cliptok/testdata/make_nfc_golden.py

The tokenizer is transformers' CLIPTokenizer loaded from testdata/golden/text/clip (CLIP's vocabulary and merges, as
openai/clip-vit-large-patch14 ships them; written by reference/make_text_golden.py). For each string: "nfc" is the
tokenizers library's NFC normaliser's output, "normalized" the output of the tokenizer's whole normaliser (NFC, white
space, lower case), "ids" tokenizer(text, truncation=True, max_length=77).input_ids and "content_ids"
tokenizer(text, add_special_tokens=False).input_ids. Strings are stored as lists of code points.

Deterministic: two runs give byte-identical files.
"""
import json
import os
import sys

import tokenizers
import transformers
from tokenizers import normalizers
from transformers import CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
A, G, C, M, L = "\u0301", "\u0300", "\u0316", "\u0334", "\u0327"  # classes 230, 230, 220, 1, 202

CASES = [
    # 1. runs of more than 30 non-starters: no U+034F, the whole run sorted as one
    ("x" + A * 30, "30 acute accents: the stream-safe limit, not past it"),
    ("x" + A * 31, "31 acute accents: x/text inserts U+034F after the 30th"),
    ("x" + A * 40, "40 acute accents"),
    ("x" + A * 100 + " cat", "100 acute accents, then a word"),
    ("x" + A * 29 + C * 5, "class 220 after 29 class-230 marks: sorted to the front of the whole run"),
    ("x" + (A + C + M) * 20, "60 marks of classes 230, 220, 1 mixed"),
    ("x" + (C + A) * 16 + "y" + (A + C) * 16, "two runs of 32 mixed marks"),
    ("e" + C * 35 + A, "an acute accent after 35 class-220 marks composes with e"),
    ("a" + L * 31 + "\u030a", "ring above after 31 cedillas composes with a (å)"),
    ("\u1100\u1161" + A * 31, "a Hangul LV pair, then 31 marks"),
    ("photo of a cafe" + A * 33 + " at night", "a prompt with a long run"),
    # 2. marks of Unicode 10-15: class 0 in the reference (starters), never reordered, blocking composition
    ("e\u1df6" + A, "U+1DF6 (Unicode 10, class 232 in x/text) before an acute accent: blocks é"),
    ("e" + A + "\u1df6", "an acute accent before U+1DF6"),
    ("o\u1abf\u0308\u0304", "U+1ABF (Unicode 13) before a diaeresis and a macron"),
    ("a" + C + "\u1ace" + A, "U+1ACE (Unicode 14) between class-220 and class-230 marks"),
    ("\u0628\u08ca\u064b", "Arabic: U+08CA (Unicode 14) before fathatan (class 27)"),
    ("\u0628\u0898\u0650", "Arabic: U+0898 (Unicode 14) before kasra (class 32)"),
    ("\u0995\u09fe\u09bc", "Bengali: U+09FE (Unicode 10) before the nukta (class 7)"),
    ("\u0c15\u0c4d\u0c3c", "Telugu: virama (class 9), then U+0C3C (Unicode 14, nukta)"),
    ("\u0d15\u0d4d\u0d3b", "Malayalam: virama, then U+0D3B (Unicode 10)"),
    ("\u07ca\u07eb\u07fd", "NKo: a tone mark (230), then U+07FD (Unicode 11)"),
    ("\u0e81\u0ec8\u0eba", "Lao: a tone mark, then U+0EBA (Unicode 12)"),
    ("x\u1df8\u1df7\u1dfa\u1df9" + C + A, "U+1DF6-1DFA mixed with older marks"),
    ("\U00011D42\U00011D44\U00011D45", "Masaram Gondi marks (Unicode 10)"),
    # 3. compositions added after Unicode 9
    ("\U00011935\U00011930", "U+11935 U+11930: composes to U+11938 in Unicode 13, not in the reference"),
    ("\U00011938", "U+11938: not split"),
    ("\U00011935\U00011930\U00011938", "both forms together"),
    ("a\U00011938b\U00011935\U00011930c", "between letters"),
    # what x/text and the reference do alike
    ("cafe\u0301 na\u0131\u0308ve re\u0301sume\u0301", "decomposed Latin"),
    ("A\u030angstro\u0308m", "Ångström decomposed"),
    ("Tie\u0302\u0301ng Vie\u0323\u0302t", "Vietnamese, marks in non-canonical order"),
    ("\u03b1\u0345\u0314\u0301", "Greek: ypogegrammeni (240) before psili and oxia"),
    ("\u1100\u1161\u11a8 \u1112\u1161\u11ab", "Hangul jamo"),
    ("\u0915\u093c \u0b47\u0b3e \u0dd9\u0dcf\u0dca", "Indic: a composition exclusion and two-part vowels"),
    ("\u0344 \u0f73 \u2126 \u212b", "singletons and non-starter decompositions"),
    ("a photo of an astronaut riding a horse", "plain ASCII"),
]


def cps(s):
    return [ord(x) for x in s]


def main():
    tok = CLIPTokenizer.from_pretrained(os.path.join(ROOT, "testdata", "golden", "text", "clip"))
    nfc = normalizers.NFC()
    norm = tok.backend_tokenizer.normalizer
    out = []
    for text, why in CASES:
        ids = tok(text, truncation=True, max_length=77).input_ids
        content = tok(text, add_special_tokens=False).input_ids
        out.append({"text": cps(text), "why": why, "nfc": cps(nfc.normalize_str(text)),
                    "normalized": cps(norm.normalize_str(text)), "ids": ids, "content_ids": content})
    head = {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
            "note": "written by make_nfc_golden.py; see its docstring"}
    with open(os.path.join(HERE, "nfc_golden.json"), "w", encoding="utf-8") as f:  # one case a line
        f.write(json.dumps(head)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in out))
        f.write("\n]}\n")
    print(f"make_nfc_golden: {len(out)} strings", file=sys.stderr)


if __name__ == "__main__":
    main()
