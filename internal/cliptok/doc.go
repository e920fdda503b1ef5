// Package cliptok is the tokenizer of OpenAI's CLIP text model, giving the token ids that
// transformers' CLIPTokenizer gives (transformers 5, whose CLIPTokenizer runs on the Hugging Face
// tokenizers library; its behaviour is what the reference tests record).
//
// # The pipeline
//
// For a text, [Tokenizer.Encode] does what that tokenizer does, in its order:
//
//  1. Added (special) tokens are cut out first: "<|startoftext|>", "<|endoftext|>" and the other
//     special tokens the tokenizer files declare. A token declared with normalized=false is
//     matched in the raw text; one with normalized=true in the normalised text of step 2
//     (leftmost-longest match, as the tokenizers library's added vocabulary does).
//  2. Normalisation of the rest: Unicode NFC (the reference's, which is not quite x/text's: see
//     "Unicode versions" below); every maximal run of White_Space characters becomes
//     one space; lower-casing character by character with the full Unicode mapping (so "İ" becomes
//     "i" + U+0307 and a final "Σ" becomes "σ", as Rust's char::to_lowercase does).
//  3. Pre-tokenisation with CLIP's pattern, the first alternative that matches at the leftmost
//     position winning: the literals <|startoftext|> and <|endoftext|>, the contractions 's 't 're
//     've 'm 'll 'd, a run of letters (\p{L}), a single number character (\p{N}), a run of
//     characters that are neither white space, letters nor numbers. White space is dropped. Each
//     piece is then split again by the byte-level pre-tokenizer's GPT-2 pattern, which changes only
//     the literal pieces ("<|endoftext|>" becomes "<|", "endoftext", "|>").
//  4. Byte-level BPE: the UTF-8 bytes of each piece map to the 256 printable stand-ins of
//     bytes_to_unicode, the last one carries the end-of-word suffix "</w>", and merges apply lowest
//     rank first (leftmost on a tie) until none applies.
//  5. <|startoftext|> + the ids + <|endoftext|>, the ids truncated to the context length − 2.
//
// ftfy is not involved: transformers 5 has no ftfy path (transformers 4's slow tokenizer used ftfy
// when installed, else a BERT BasicTokenizer that also separated CJK characters and dropped control
// characters; its fast tokenizer did what is described here). Invalid UTF-8 in a Go string is read
// as U+FFFD per bad byte, as Python's decode(errors="replace") would.
//
// # Files
//
// [Load] reads a tokenizer directory as transformers does: vocab.json + merges.txt (the layout of
// openai/clip-vit-large-patch14 and of Stable Diffusion pipelines' tokenizer/ folders) or
// tokenizer.json, plus tokenizer_config.json and special_tokens_map.json when present (special
// tokens, the pad token, model_max_length). A tokenizer.json must describe CLIP's pipeline (BPE with
// the "</w>" suffix, the normaliser and pre-tokenizer above); anything else is refused with
// [ErrUnsupported] rather than tokenised differently.
//
// # Why not github.com/sugarme/tokenizer
//
// The module already depends on sugarme/tokenizer v0.3.0, a Go port of the tokenizers library, but
// it cannot give CLIP's ids. Loading the tokenizer.json that transformers writes for CLIP and
// encoding a few strings with it shows: the BPE model ignores end_of_word_suffix (no "</w>" tokens
// at all: "a photo" → [64 1153] instead of [320 1125]); the Split pre-tokenizer runs on Go's regexp,
// whose \s is ASCII-only, so no-break and ideographic spaces become tokens; "don't" splits into
// "'", "t"; Lowercase uses strings.ToLower ("İ" → "i", not "i̇"); special tokens inside the text are
// dropped; and Encode panics (nil pointer in RobertaProcessing) when asked to add the start and end
// tokens, and returns a nil encoding when not. Its loader also panics on malformed input
// (regexp.MustCompile, unchecked type assertions). So this package implements the pipeline itself,
// on the standard library and golang.org/x/text/unicode/norm (checked in sugarme/tokenizer v0.3.0).
//
// # Unicode versions
//
// Letters, numbers, white space and case mappings come from Go's unicode package (Unicode 15.0.0
// for Go < 1.27); the tokenizers library uses newer tables (Oniguruma's and Rust's), in which about
// 5000 more code points are letters and 55 more have a lower-case form. tables_gen.go, generated
// from the reference's answers for every code point (testdata/golden/text/unicode.json), corrects
// those; a test checks all 1,112,064 code points.
//
// For NFC it is the other way round: the reference's tables are older (Unicode 9, those of the
// unicode-normalization-alignments crate the tokenizers library uses) than golang.org/x/text's
// (Unicode 15.0.0), and its algorithm has no stream-safe rule. So [nfc] is this package's own
// (decomposition, canonical ordering, composition) on x/text's data corrected by the reference's:
// marks added in Unicode 10–15 (U+1DF6–U+1DFA, U+1ABF–U+1ACE, U+0898–U+089F, U+08CA–U+08D3, U+07FD,
// U+09FE, U+0C3C, U+0D3B–U+0D3C, …) are starters (class 0) and never reordered; U+11938 is not
// decomposed and U+11935 U+11930 not composed; a run of more than 30 marks is sorted as one run,
// with no U+034F inserted. Those facts are probed from the reference's own NFC and NFD normalisers
// for every code point by testdata/probe_nfc.py (testdata/nfc.json) and generated into
// tables_gen.go too; tests check every probed answer, the token ids of strings that exercise each
// difference (testdata/nfc_golden.json, from testdata/make_nfc_golden.py), and agreement with
// x/text everywhere else.
package cliptok

//go:generate go run ../../cmd/gen-cliptok-tables
