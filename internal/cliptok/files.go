package cliptok

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sdsafety/safety/internal/fileread"
)

// File names of a tokenizer directory.
const (
	VocabName           = "vocab.json"
	MergesName          = "merges.txt"
	TokenizerJSONName   = "tokenizer.json"
	TokenizerConfigName = "tokenizer_config.json"
	SpecialTokensName   = "special_tokens_map.json"
)

// CLIP's pre-tokenizer pattern as the tokenizers library writes it in tokenizer.json.
const clipPattern = `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`

// HasFiles reports whether dir holds tokenizer files Load can read (tokenizer.json, or vocab.json
// and merges.txt).
func HasFiles(dir string) bool {
	if isFile(filepath.Join(dir, TokenizerJSONName)) {
		return true
	}
	return isFile(filepath.Join(dir, VocabName)) && isFile(filepath.Join(dir, MergesName))
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// Load reads the CLIP tokenizer in dir: tokenizer.json when present (as transformers prefers it),
// else vocab.json and merges.txt; plus tokenizer_config.json and special_tokens_map.json when
// present. Errors wrap [ErrFormat] or [ErrUnsupported] and name the file.
//
// Special tokens: bos_token, eos_token, unk_token and pad_token (defaults "<|startoftext|>",
// "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"), sep/cls/mask tokens and
// additional_special_tokens when given, tokenizer_config.json's added_tokens_decoder and
// tokenizer.json's added_tokens are all cut out of the text before BPE (so SD 2's pad token "!" is
// id 0 wherever "!" occurs, as in transformers). A token given as a plain string is matched in the
// raw text; one given as an AddedToken object with "normalized": true in the normalised text. When
// several declarations name the same text, the first one counts, in the order tokenizer.json's
// added_tokens, added_tokens_decoder (by id), bos, eos, unk, sep, pad, cls, mask,
// additional_special_tokens — the order in which transformers registers them.
func Load(dir string) (*Tokenizer, error) {
	cfg, err := readConfig(dir)
	if err != nil {
		return nil, err
	}
	b := builder{}
	if p := filepath.Join(dir, TokenizerJSONName); isFile(p) {
		if err := b.readTokenizerJSON(p); err != nil {
			return nil, err
		}
	} else {
		if err := b.readVocab(filepath.Join(dir, VocabName)); err != nil {
			return nil, err
		}
		if err := b.readMerges(filepath.Join(dir, MergesName)); err != nil {
			return nil, err
		}
	}
	return b.build(cfg, dir)
}

// addedToken is a special or added token declaration.
type addedToken struct {
	Content    string `json:"content"`
	Normalized *bool  `json:"normalized"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	SingleWord bool   `json:"single_word"`
	Special    *bool  `json:"special"`
	ID         *int   `json:"id"`
}

// tokenValue is a special token written either as a string or as an AddedToken object; nil when
// absent or null.
type tokenValue struct{ tok *addedToken }

func (v *tokenValue) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		v.tok = nil
	case len(data) > 0 && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		f := false
		v.tok = &addedToken{Content: s, Normalized: &f}
	default:
		var t addedToken
		if err := json.Unmarshal(data, &t); err != nil {
			return err
		}
		v.tok = &t
	}
	return nil
}

// specialTokens are the special-token keys of tokenizer_config.json and special_tokens_map.json.
type specialTokens struct {
	BOS        tokenValue   `json:"bos_token"`
	EOS        tokenValue   `json:"eos_token"`
	UNK        tokenValue   `json:"unk_token"`
	SEP        tokenValue   `json:"sep_token"`
	PAD        tokenValue   `json:"pad_token"`
	CLS        tokenValue   `json:"cls_token"`
	Mask       tokenValue   `json:"mask_token"`
	Additional []tokenValue `json:"additional_special_tokens"`
}

// config is what this package reads from tokenizer_config.json and special_tokens_map.json.
type config struct {
	specialTokens
	AddedTokensDecoder map[string]addedToken `json:"added_tokens_decoder"`
	ModelMaxLength     *float64              `json:"model_max_length"`
	TokenizerClass     string                `json:"tokenizer_class"`
}

func readConfig(dir string) (config, error) {
	var cfg config
	if err := readJSON(filepath.Join(dir, TokenizerConfigName), &cfg, true); err != nil {
		return cfg, err
	}
	switch cfg.TokenizerClass {
	case "", "CLIPTokenizer", "CLIPTokenizerFast":
	default:
		return cfg, fmt.Errorf("%w: %s: tokenizer_class %q is not CLIP's", ErrUnsupported,
			filepath.Join(dir, TokenizerConfigName), cfg.TokenizerClass)
	}
	// special_tokens_map.json, when present, overrides the special tokens of tokenizer_config.json.
	var sm specialTokens
	if err := readJSON(filepath.Join(dir, SpecialTokensName), &sm, true); err != nil {
		return cfg, err
	}
	over := func(dst *tokenValue, src tokenValue) {
		if src.tok != nil {
			*dst = src
		}
	}
	over(&cfg.BOS, sm.BOS)
	over(&cfg.EOS, sm.EOS)
	over(&cfg.UNK, sm.UNK)
	over(&cfg.SEP, sm.SEP)
	over(&cfg.PAD, sm.PAD)
	over(&cfg.CLS, sm.CLS)
	over(&cfg.Mask, sm.Mask)
	if len(sm.Additional) > 0 {
		cfg.Additional = sm.Additional
	}
	return cfg, nil
}

// readJSON decodes the JSON file at path into v; a missing file is not an error when optional.
func readJSON(path string, v any, optional bool) error {
	data, err := fileread.ReadFile(path, fileread.ConfigLimit)
	if optional && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrFormat, path, err)
	}
	return nil
}

// builder collects the parts of a tokenizer while the files are read.
type builder struct {
	vocab   map[string]int
	merges  [][2]string
	added   []addedToken // tokenizer.json's added_tokens, in file order
	unk     string       // tokenizer.json's model.unk_token
	source  string       // the file the vocabulary came from, for errors
	msource string       // the file the merges came from
}

func (b *builder) readVocab(path string) error {
	if err := readJSON(path, &b.vocab, false); err != nil {
		return err
	}
	b.source = path
	return nil
}

// readMerges reads merges.txt: an optional "#version" line, then one merge per line, two symbols
// separated by one space. Empty lines are skipped.
func (b *builder) readMerges(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimRight(sc.Text(), "\r")
		if s == "" || (line == 1 && strings.HasPrefix(s, "#version")) {
			continue
		}
		a, c, ok := strings.Cut(s, " ")
		if !ok || a == "" || c == "" || strings.Contains(c, " ") {
			return fmt.Errorf("%w: %s:%d: %q is not a merge (two symbols separated by a space)", ErrFormat, path, line, s)
		}
		b.merges = append(b.merges, [2]string{a, c})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrFormat, path, err)
	}
	b.msource = path
	return nil
}

// tokenizerJSON is the part of a tokenizers-library tokenizer.json this package reads.
type tokenizerJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Model         struct {
		Type                    string            `json:"type"`
		Dropout                 *float64          `json:"dropout"`
		UnkToken                *string           `json:"unk_token"`
		ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
		ByteFallback            bool              `json:"byte_fallback"`
		IgnoreMerges            bool              `json:"ignore_merges"`
		Vocab                   map[string]int    `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"`
	} `json:"model"`
}

// readTokenizerJSON reads a tokenizer.json and checks that it is CLIP's pipeline.
func (b *builder) readTokenizerJSON(path string) error {
	var tj tokenizerJSON
	if err := readJSON(path, &tj, false); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrUnsupported, path, fmt.Sprintf(format, args...))
	}
	m := tj.Model
	switch {
	case m.Type != "BPE":
		return bad("model type %q, want BPE", m.Type)
	case m.EndOfWordSuffix == nil || *m.EndOfWordSuffix != EndOfWord:
		return bad("BPE end_of_word_suffix is not %q", EndOfWord)
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "":
		return bad("BPE continuing_subword_prefix %q, want none", *m.ContinuingSubwordPrefix)
	case m.Dropout != nil && *m.Dropout != 0:
		return bad("BPE dropout %v, want none", *m.Dropout)
	case m.ByteFallback:
		return bad("BPE byte_fallback is set")
	case m.IgnoreMerges:
		return bad("BPE ignore_merges is set")
	}
	if err := checkNormalizer(tj.Normalizer); err != nil {
		return bad("%v", err)
	}
	if err := checkPreTokenizer(tj.PreTokenizer); err != nil {
		return bad("%v", err)
	}
	b.vocab = m.Vocab
	b.source, b.msource = path, path
	for i, raw := range m.Merges {
		var pair [2]string
		var s string
		var arr []string
		switch {
		case json.Unmarshal(raw, &s) == nil:
			a, c, ok := strings.Cut(s, " ")
			if !ok || a == "" || c == "" || strings.Contains(c, " ") {
				return fmt.Errorf("%w: %s: merge %d %q is not two symbols separated by a space", ErrFormat, path, i, s)
			}
			pair = [2]string{a, c}
		case json.Unmarshal(raw, &arr) == nil && len(arr) == 2:
			pair = [2]string{arr[0], arr[1]}
		default:
			return fmt.Errorf("%w: %s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", ErrFormat, path, i)
		}
		b.merges = append(b.merges, pair)
	}
	b.added = tj.AddedTokens
	if m.UnkToken != nil {
		b.unk = *m.UnkToken
	}
	return nil
}

// checkNormalizer accepts CLIP's normaliser: Sequence[NFC, Replace(Regex \s+ → " "), Lowercase].
func checkNormalizer(raw json.RawMessage) error {
	var n struct {
		Type        string `json:"type"`
		Normalizers []struct {
			Type    string `json:"type"`
			Pattern struct {
				Regex *string `json:"Regex"`
			} `json:"pattern"`
			Content string `json:"content"`
		} `json:"normalizers"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return fmt.Errorf("normalizer: %w", err)
	}
	ns := n.Normalizers
	if n.Type != "Sequence" || len(ns) != 3 || ns[0].Type != "NFC" || ns[1].Type != "Replace" ||
		ns[1].Pattern.Regex == nil || *ns[1].Pattern.Regex != `\s+` || ns[1].Content != " " || ns[2].Type != "Lowercase" {
		return fmt.Errorf("normalizer %s is not CLIP's (Sequence of NFC, Replace \\s+ by a space, Lowercase)", compact(raw))
	}
	return nil
}

// checkPreTokenizer accepts CLIP's pre-tokenizer: Sequence[Split(CLIP's pattern, Removed, invert),
// ByteLevel(add_prefix_space false, use_regex true)].
func checkPreTokenizer(raw json.RawMessage) error {
	var p struct {
		Type          string `json:"type"`
		PreTokenizers []struct {
			Type    string `json:"type"`
			Pattern struct {
				Regex *string `json:"Regex"`
			} `json:"pattern"`
			Behavior       string `json:"behavior"`
			Invert         bool   `json:"invert"`
			AddPrefixSpace bool   `json:"add_prefix_space"`
			UseRegex       *bool  `json:"use_regex"`
		} `json:"pretokenizers"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("pre_tokenizer: %w", err)
	}
	ps := p.PreTokenizers
	if p.Type != "Sequence" || len(ps) != 2 || ps[0].Type != "Split" || ps[0].Pattern.Regex == nil ||
		*ps[0].Pattern.Regex != clipPattern || ps[0].Behavior != "Removed" || !ps[0].Invert ||
		ps[1].Type != "ByteLevel" || ps[1].AddPrefixSpace || (ps[1].UseRegex != nil && !*ps[1].UseRegex) {
		return fmt.Errorf("pre_tokenizer %s is not CLIP's (Split on CLIP's pattern, then ByteLevel)", compact(raw))
	}
	return nil
}

func compact(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	s := b.String()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// build checks the collected parts and makes the tokenizer.
func (b *builder) build(cfg config, dir string) (*Tokenizer, error) {
	if len(b.vocab) == 0 {
		return nil, fmt.Errorf("%w: %s: empty vocabulary", ErrFormat, b.source)
	}
	t := &Tokenizer{vocab: make(map[string]int, len(b.vocab)+8), inverse: make(map[int]string, len(b.vocab)+8),
		merges: make(map[[2]int]merge, len(b.merges))}
	for tok, id := range b.vocab {
		if id < 0 {
			return nil, fmt.Errorf("%w: %s: token %q has negative id %d", ErrFormat, b.source, tok, id)
		}
		if other, dup := t.inverse[id]; dup {
			return nil, fmt.Errorf("%w: %s: tokens %q and %q share id %d", ErrFormat, b.source, other, tok, id)
		}
		t.vocab[tok], t.inverse[id] = id, tok
	}
	alphabet := bytesToUnicode()
	for c := 0; c < 256; c++ {
		s := string(alphabet[c])
		id, ok := t.vocab[s]
		idEnd, okEnd := t.vocab[s+EndOfWord]
		if !ok || !okEnd {
			return nil, fmt.Errorf("%w: %s: the vocabulary lacks the byte-level symbol %q or %q: not a CLIP vocabulary",
				ErrUnsupported, b.source, s, s+EndOfWord)
		}
		t.byteID[c], t.byteEndID[c] = id, idEnd
	}
	for rank, m := range b.merges {
		a, okA := t.vocab[m[0]]
		c, okC := t.vocab[m[1]]
		res, okR := t.vocab[m[0]+m[1]]
		if !okA || !okC || !okR {
			return nil, fmt.Errorf("%w: %s: merge %d (%q %q) uses or makes a token outside the vocabulary",
				ErrFormat, b.msource, rank, m[0], m[1])
		}
		key := [2]int{a, c}
		if _, dup := t.merges[key]; !dup { // the first (lowest-ranked) occurrence counts
			t.merges[key] = merge{rank: rank, id: res}
		}
	}

	// Special tokens, in the order transformers registers them; the first declaration of a text wins.
	decls := append([]addedToken(nil), b.added...)
	ids := make([]int, 0, len(cfg.AddedTokensDecoder))
	byID := map[int]addedToken{}
	for k, a := range cfg.AddedTokensDecoder {
		id, err := strconv.Atoi(k)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: added_tokens_decoder key %q is not an id", ErrFormat,
				filepath.Join(dir, TokenizerConfigName), k)
		}
		a.ID = &id
		ids = append(ids, id)
		byID[id] = a
	}
	sort.Ints(ids)
	for _, id := range ids {
		decls = append(decls, byID[id])
	}
	named := func(v tokenValue, def string) string {
		if v.tok == nil {
			if def != "" {
				f := false
				decls = append(decls, addedToken{Content: def, Normalized: &f})
			}
			return def
		}
		decls = append(decls, *v.tok)
		return v.tok.Content
	}
	unkDefault := "<|endoftext|>"
	if b.unk != "" {
		unkDefault = b.unk
	}
	bos := named(cfg.BOS, "<|startoftext|>")
	eos := named(cfg.EOS, "<|endoftext|>")
	unk := named(cfg.UNK, unkDefault)
	named(cfg.SEP, "")
	pad := named(cfg.PAD, "<|endoftext|>")
	named(cfg.CLS, "")
	named(cfg.Mask, "")
	for _, v := range cfg.Additional {
		named(v, "")
	}
	seen := map[string]bool{}
	for _, d := range decls {
		if d.Content == "" || seen[d.Content] {
			continue
		}
		seen[d.Content] = true
		if d.LStrip || d.RStrip || d.SingleWord {
			return nil, fmt.Errorf("%w: %s: added token %q uses lstrip, rstrip or single_word", ErrUnsupported, dir, d.Content)
		}
		id, ok := t.vocab[d.Content]
		if d.ID != nil {
			if ok && id != *d.ID {
				return nil, fmt.Errorf("%w: %s: added token %q has id %d but the vocabulary says %d", ErrFormat, dir,
					d.Content, *d.ID, id)
			}
			id, ok = *d.ID, true
			if other, used := t.inverse[id]; used && other != d.Content {
				return nil, fmt.Errorf("%w: %s: added token %q has id %d, which is %q", ErrFormat, dir, d.Content, id, other)
			}
			t.vocab[d.Content], t.inverse[id] = id, d.Content
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s: special token %q is not in the vocabulary", ErrUnsupported, dir, d.Content)
		}
		sp := special{content: d.Content, id: id}
		// AddedToken's default: normalized unless special.
		normalized := d.Normalized == nil && d.Special != nil && !*d.Special
		if d.Normalized != nil {
			normalized = *d.Normalized
		}
		if normalized {
			t.normSpecials = append(t.normSpecials, sp)
		} else {
			t.rawSpecials = append(t.rawSpecials, sp)
		}
	}
	var err error
	lookup := func(name, s string) int {
		id, ok := t.vocab[s]
		if !ok && err == nil {
			err = fmt.Errorf("%w: %s: %s %q is not in the vocabulary", ErrFormat, dir, name, s)
		}
		return id
	}
	t.bos, t.eos, t.pad, t.unk = lookup("bos_token", bos), lookup("eos_token", eos), lookup("pad_token", pad), lookup("unk_token", unk)
	if err != nil {
		return nil, err
	}
	if cfg.ModelMaxLength != nil && *cfg.ModelMaxLength > 0 && *cfg.ModelMaxLength <= 1<<20 {
		t.modelMaxLength = int(*cfg.ModelMaxLength)
	}
	return t, nil
}
