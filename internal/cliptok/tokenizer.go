package cliptok

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors; every error of this package wraps one of them.
var (
	// ErrFormat reports tokenizer files that are missing, unreadable or inconsistent.
	ErrFormat = errors.New("cliptok: bad tokenizer files")
	// ErrUnsupported reports a well-formed tokenizer that is not CLIP's (another model type,
	// normaliser or pre-tokenizer, or added-token options this package does not implement).
	ErrUnsupported = errors.New("cliptok: unsupported tokenizer")
)

// EndOfWord is the suffix CLIP's BPE vocabulary marks the last symbol of a word with.
const EndOfWord = "</w>"

// DefaultContextLength is the context of CLIP's text model (max_position_embeddings), and
// model_max_length in the tokenizer_config.json of openai/clip-vit-large-patch14.
const DefaultContextLength = 77

// Tokenizer is a loaded CLIP tokenizer. It is immutable and safe for concurrent use.
type Tokenizer struct {
	vocab   map[string]int // token → id (model vocabulary and added tokens)
	inverse map[int]string // id → token
	merges  map[[2]int]merge
	// byteID[b] and byteEndID[b] are the ids of the stand-in of byte b, alone and with "</w>".
	byteID, byteEndID [256]int

	rawSpecials  []special // added tokens matched in the raw text (normalized=false)
	normSpecials []special // added tokens matched in the normalised text (normalized=true)

	bos, eos, pad, unk int
	modelMaxLength     int // tokenizer_config.json's model_max_length; 0 when absent or huge
}

// merge is one BPE merge rule: its priority (lower first) and the id of the merged symbol.
type merge struct{ rank, id int }

// special is an added token: its text and id.
type special struct {
	content string
	id      int
}

// Encoding is a tokenised text as the model gets it.
type Encoding struct {
	// IDs is <|startoftext|>, the content tokens (at most the context length − 2) and <|endoftext|>.
	IDs []int
	// Tokens is the number of content tokens before truncation (len(IDs) − 2 when not truncated).
	Tokens int
	// Truncated reports that content tokens were dropped to fit the context.
	Truncated bool
}

// BOS, EOS and Pad return the ids of <|startoftext|>, <|endoftext|> and the padding token
// (49406, 49407 and 49407 for openai/clip-vit-large-patch14).
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the id of the end-of-text token.
func (t *Tokenizer) EOS() int { return t.eos }

// Pad returns the id of the padding token (tokenizer_config.json's pad_token; EOS when unset).
func (t *Tokenizer) Pad() int { return t.pad }

// VocabSize returns the number of ids (one more than the largest id).
func (t *Tokenizer) VocabSize() int {
	n := 0
	for id := range t.inverse {
		n = max(n, id+1)
	}
	return n
}

// ModelMaxLength returns tokenizer_config.json's model_max_length, or 0 when it is absent or
// larger than any real context (transformers writes 1e30 for "no limit").
func (t *Tokenizer) ModelMaxLength() int { return t.modelMaxLength }

// Token returns the token string of id and whether the id exists.
func (t *Tokenizer) Token(id int) (string, bool) {
	s, ok := t.inverse[id]
	return s, ok
}

// ID returns the id of a token string (e.g. "cat</w>") and whether it exists.
func (t *Tokenizer) ID(token string) (int, bool) {
	id, ok := t.vocab[token]
	return id, ok
}

// Encode tokenises text for a model with the given context length (77 for CLIP; ≤ 2 means
// [DefaultContextLength]): <|startoftext|>, at most context−2 content tokens, <|endoftext|>. It is
// transformers' tokenizer(text, truncation=True, max_length=context).input_ids.
func (t *Tokenizer) Encode(text string, context int) Encoding {
	if context <= 2 {
		context = DefaultContextLength
	}
	limit := context - 2
	content := t.Tokens(text)
	e := Encoding{Tokens: len(content), Truncated: len(content) > limit}
	if e.Truncated {
		content = content[:limit]
	}
	e.IDs = make([]int, 0, len(content)+2)
	e.IDs = append(e.IDs, t.bos)
	e.IDs = append(e.IDs, content...)
	e.IDs = append(e.IDs, t.eos)
	return e
}

// Tokens returns the content token ids of text, without <|startoftext|>, <|endoftext|> or
// truncation: transformers' tokenizer(text, add_special_tokens=False).input_ids.
func (t *Tokenizer) Tokens(text string) []int {
	var ids []int
	splitSpecials(validUTF8(text), t.rawSpecials, func(seg string, id int) {
		if id >= 0 {
			ids = append(ids, id)
			return
		}
		splitSpecials(normalize(seg), t.normSpecials, func(seg string, id int) {
			if id >= 0 {
				ids = append(ids, id)
				return
			}
			preTokenize(seg, func(word string) { ids = t.bpe(word, ids) })
		})
	})
	return ids
}

// validUTF8 replaces each invalid byte of s with U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // range yields U+FFFD for each invalid byte
	}
	return b.String()
}

// splitSpecials calls fn for each part of s in order: a run of ordinary text (id −1) or an added
// token (its id). Matching is leftmost-longest.
func splitSpecials(s string, specials []special, fn func(seg string, id int)) {
	if len(specials) == 0 {
		if s != "" {
			fn(s, -1)
		}
		return
	}
	start := 0
	for i := 0; i < len(s); {
		best := -1
		for k, sp := range specials {
			if strings.HasPrefix(s[i:], sp.content) && (best < 0 || len(sp.content) > len(specials[best].content)) {
				best = k
			}
		}
		if best < 0 {
			_, n := utf8.DecodeRuneInString(s[i:])
			i += n
			continue
		}
		if i > start {
			fn(s[start:i], -1)
		}
		fn(specials[best].content, specials[best].id)
		i += len(specials[best].content)
		start = i
	}
	if start < len(s) {
		fn(s[start:], -1)
	}
}

// normalize applies the normaliser of CLIP's tokenizer: NFC (the reference's, see [nfc]), every run
// of white space to one space, lower-casing character by character.
func normalize(s string) string {
	s = nfc(s)
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if isSpace(r) {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		writeLower(&b, r)
	}
	return b.String()
}

// classRange gives the class of the code points lo..hi: 'L' letter, 'N' number, 'W' white space,
// 'P' anything else.
type classRange struct {
	lo, hi rune
	class  byte
}

// class returns the class of r in CLIP's pre-tokenizer pattern as the reference sees it: Go's
// unicode tables, corrected by [classOverrides] where the reference's newer Unicode differs.
//   - 'W': White_Space, what \s matches in the tokenizers library's regular expressions
//     (Oniguruma): U+0009–U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029,
//     U+202F, U+205F, U+3000;
//   - 'L': \p{L}; 'N': \p{N}; 'P': anything else.
func class(r rune) byte {
	if r >= 0x80 {
		i := sort.Search(len(classOverrides), func(i int) bool { return classOverrides[i].hi >= r })
		if i < len(classOverrides) && classOverrides[i].lo <= r {
			return classOverrides[i].class
		}
	}
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

func isSpace(r rune) bool  { return class(r) == 'W' }
func isLetter(r rune) bool { return class(r) == 'L' }
func isNumber(r rune) bool { return class(r) == 'N' }

// writeLower writes the full lower-case mapping of r, as Rust's char::to_lowercase gives it: the
// simple mapping of UnicodeData.txt, except U+0130 (İ), whose unconditional mapping in
// SpecialCasing.txt is two characters, and the characters of [lowerOverrides] (newer Unicode). The
// conditional mappings (final sigma, Lithuanian, Turkic) do not apply to a single character.
func writeLower(b *strings.Builder, r rune) {
	if r == 'İ' {
		b.WriteString("i\u0307")
		return
	}
	if r >= 0x80 {
		if s, ok := lowerOverrides[r]; ok {
			b.WriteString(s)
			return
		}
	}
	b.WriteRune(unicode.ToLower(r))
}

// literal pieces of CLIP's pattern, and how the byte-level pre-tokenizer splits them again.
var literals = []struct {
	text  string
	words []string
}{
	{"<|startoftext|>", []string{"<|", "startoftext", "|>"}},
	{"<|endoftext|>", []string{"<|", "endoftext", "|>"}},
}

// contractions of CLIP's pattern, in its order.
var contractions = []string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}

// preTokenize splits normalised text into the words BPE runs on, calling fn for each in order.
// See the package documentation for the rules.
func preTokenize(s string, fn func(word string)) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if isSpace(r) {
			i += n
			continue
		}
		rest := s[i:]
		matched := false
		for _, lit := range literals {
			if strings.HasPrefix(rest, lit.text) {
				for _, w := range lit.words {
					fn(w)
				}
				i += len(lit.text)
				matched = true
				break
			}
		}
		if matched {
			continue
		}
		for _, c := range contractions {
			if strings.HasPrefix(rest, c) {
				fn(c)
				i += len(c)
				matched = true
				break
			}
		}
		if matched {
			continue
		}
		j := i + n
		switch {
		case isLetter(r):
			for j < len(s) {
				r2, n2 := utf8.DecodeRuneInString(s[j:])
				if !isLetter(r2) {
					break
				}
				j += n2
			}
		case isNumber(r):
			// one character
		default:
			for j < len(s) {
				r2, n2 := utf8.DecodeRuneInString(s[j:])
				if isSpace(r2) || isLetter(r2) || isNumber(r2) {
					break
				}
				j += n2
			}
		}
		fn(s[i:j])
		i = j
	}
}

// String describes the tokenizer.
func (t *Tokenizer) String() string {
	return fmt.Sprintf("CLIP tokenizer: %d ids, %d merges, bos %d, eos %d, pad %d", t.VocabSize(), len(t.merges),
		t.bos, t.eos, t.pad)
}
