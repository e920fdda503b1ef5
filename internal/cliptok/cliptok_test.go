package cliptok

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

const goldenDir = "../../testdata/golden/text"

// tokenizerGolden is testdata/golden/text/tokenizer_expected.json.
type tokenizerGolden struct {
	Corpus   []string `json:"corpus"`
	Variants map[string]struct {
		TokenizerConfig *string `json:"tokenizer_config"`
		Dir             string  `json:"dir"`
		BOS             int     `json:"bos"`
		EOS             int     `json:"eos"`
		Pad             int     `json:"pad"`
		Encodings       []struct {
			IDs        []int `json:"ids"`
			ContentIDs []int `json:"content_ids"`
		} `json:"encodings"`
	} `json:"variants"`
}

var (
	goldenOnce sync.Once
	golden     tokenizerGolden
	goldenErr  error
)

func loadGolden(t *testing.T) tokenizerGolden {
	t.Helper()
	goldenOnce.Do(func() {
		data, err := os.ReadFile(filepath.Join(goldenDir, "tokenizer_expected.json"))
		if err != nil {
			goldenErr = err
			return
		}
		goldenErr = json.Unmarshal(data, &golden)
	})
	if goldenErr != nil {
		t.Fatal(goldenErr)
	}
	return golden
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// variantDir returns a directory holding the tokenizer of a golden variant.
func variantDir(t *testing.T, name string, cfg *string, dir string) string {
	t.Helper()
	switch {
	case dir != "":
		return filepath.Join(goldenDir, dir)
	case name == "openai":
		return filepath.Join(goldenDir, "clip")
	}
	d := t.TempDir()
	copyFile(t, filepath.Join(goldenDir, "clip", VocabName), filepath.Join(d, VocabName))
	copyFile(t, filepath.Join(goldenDir, "clip", MergesName), filepath.Join(d, MergesName))
	if cfg != nil {
		copyFile(t, filepath.Join(goldenDir, *cfg), filepath.Join(d, TokenizerConfigName))
	}
	return d
}

// TestCorpus compares the ids with transformers' CLIPTokenizer on every corpus string, for the model
// directory's tokenizer, the tokenizer_config.json variants and the tokenizer.json fixture.
func TestCorpus(t *testing.T) {
	g := loadGolden(t)
	total, equal := 0, 0
	for _, name := range []string{"openai", "none", "sd15", "sd2", "mixed", "tokenizer_json"} {
		v, ok := g.Variants[name]
		if !ok {
			t.Fatalf("variant %s missing from the golden file", name)
		}
		t.Run(name, func(t *testing.T) {
			tok, err := Load(variantDir(t, name, v.TokenizerConfig, v.Dir))
			if err != nil {
				t.Fatal(err)
			}
			if tok.BOS() != v.BOS || tok.EOS() != v.EOS || tok.Pad() != v.Pad {
				t.Errorf("bos/eos/pad = %d/%d/%d, want %d/%d/%d", tok.BOS(), tok.EOS(), tok.Pad(), v.BOS, v.EOS, v.Pad)
			}
			for i, s := range g.Corpus {
				want := v.Encodings[i]
				total++
				e := tok.Encode(s, 77)
				content := tok.Tokens(s)
				ok := slices.Equal(e.IDs, want.IDs) && slices.Equal(content, want.ContentIDs) &&
					e.Tokens == len(want.ContentIDs) && e.Truncated == (len(want.ContentIDs) > 75)
				if ok {
					equal++
					continue
				}
				t.Errorf("%q:\n got  %v (content %v, %d tokens, truncated %v)\n want %v (content %v)", s, e.IDs, content,
					e.Tokens, e.Truncated, want.IDs, want.ContentIDs)
			}
		})
	}
	t.Logf("token ids equal to transformers' CLIPTokenizer: %d of %d (corpus %d strings × 6 tokenizers)", equal, total,
		len(g.Corpus))
}

// TestUnicodeTables checks every code point's class and normalisation against the reference's dump.
func TestUnicodeTables(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(goldenDir, "unicode.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Classes    [][3]any         `json:"classes"`
		Normalized map[string][]int `json:"normalized"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	n, bad := 0, 0
	for _, c := range d.Classes {
		lo, hi, cls := rune(c[0].(float64)), rune(c[1].(float64)), c[2].(string)[0]
		for r := lo; r <= hi; r++ {
			if r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			n++
			if got := class(r); got != cls {
				if bad++; bad <= 10 {
					t.Errorf("class(%U) = %c, want %c", r, got, cls)
				}
			}
			want := string(r)
			if cps, ok := d.Normalized[strconv.FormatInt(int64(r), 16)]; ok {
				var b strings.Builder
				for _, c := range cps {
					b.WriteRune(rune(c))
				}
				want = b.String()
			}
			if got := normalize(string(r)); got != want {
				if bad++; bad <= 10 {
					t.Errorf("normalize(%U) = %+q, want %+q", r, got, want)
				}
			}
		}
	}
	if n != 0x110000-0x800 {
		t.Errorf("the dump covers %d code points, want %d", n, 0x110000-0x800)
	}
	if bad > 0 {
		t.Errorf("%d differences (run go generate ./internal/cliptok after changing Go or the golden files)", bad)
	}
}

// TestTokenizerJSONMergeArrays reads the fixture with its merges written as ["a", "b"] pairs (what
// recent tokenizers versions write) instead of "a b" strings.
func TestTokenizerJSONMergeArrays(t *testing.T) {
	g := loadGolden(t)
	src := filepath.Join(goldenDir, "tokenizer_json")
	data, err := os.ReadFile(filepath.Join(src, TokenizerJSONName))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	model := doc["model"].(map[string]any)
	var arrays []any
	for _, m := range model["merges"].([]any) {
		a, b, _ := strings.Cut(m.(string), " ")
		arrays = append(arrays, []string{a, b})
	}
	model["merges"] = arrays
	d := t.TempDir()
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, TokenizerJSONName), out, 0o644); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(src, TokenizerConfigName), filepath.Join(d, TokenizerConfigName))
	tok, err := Load(d)
	if err != nil {
		t.Fatal(err)
	}
	v := g.Variants["tokenizer_json"]
	for i, s := range g.Corpus {
		if got := tok.Encode(s, 77).IDs; !slices.Equal(got, v.Encodings[i].IDs) {
			t.Errorf("%q: %v, want %v", s, got, v.Encodings[i].IDs)
		}
	}
}

func TestEncodeShape(t *testing.T) {
	tok, err := Load(filepath.Join(goldenDir, "clip"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 49408 || tok.ModelMaxLength() != 77 {
		t.Errorf("vocab %d, model_max_length %d", tok.VocabSize(), tok.ModelMaxLength())
	}
	e := tok.Encode("a photo of a cat", 77)
	if want := []int{49406, 320, 1125, 539, 320, 2368, 49407}; !slices.Equal(e.IDs, want) || e.Truncated || e.Tokens != 5 {
		t.Errorf("Encode = %+v, want ids %v", e, want)
	}
	long := tok.Encode(strings.Repeat("cat ", 200), 77)
	if len(long.IDs) != 77 || !long.Truncated || long.Tokens != 200 || long.IDs[76] != tok.EOS() {
		t.Errorf("long text: %d ids, truncated %v, %d tokens", len(long.IDs), long.Truncated, long.Tokens)
	}
	short := tok.Encode(strings.Repeat("cat ", 200), 10)
	if len(short.IDs) != 10 || !short.Truncated {
		t.Errorf("context 10: %d ids", len(short.IDs))
	}
	if s, ok := tok.Token(320); !ok || s != "a</w>" {
		t.Errorf("Token(320) = %q, %v", s, ok)
	}
	if id, ok := tok.ID("cat</w>"); !ok || id != 2368 {
		t.Errorf("ID(cat</w>) = %d, %v", id, ok)
	}
	// invalid UTF-8: each bad byte reads as U+FFFD
	if got, want := tok.Tokens("a\xffb"), tok.Tokens("a\ufffdb"); !slices.Equal(got, want) {
		t.Errorf("invalid UTF-8: %v, want %v", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	clip := filepath.Join(goldenDir, "clip")
	write := func(t *testing.T, d, name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, d string)
		want  error
	}{
		{"empty directory", func(t *testing.T, d string) {}, ErrFormat},
		{"bad merge line", func(t *testing.T, d string) {
			copyFile(t, filepath.Join(clip, VocabName), filepath.Join(d, VocabName))
			write(t, d, MergesName, "#version: 0.2\ni n\nthree parts here\n")
		}, ErrFormat},
		{"merge outside the vocabulary", func(t *testing.T, d string) {
			copyFile(t, filepath.Join(clip, VocabName), filepath.Join(d, VocabName))
			write(t, d, MergesName, "#version: 0.2\nzzzq zzzx\n")
		}, ErrFormat},
		{"not a byte-level vocabulary", func(t *testing.T, d string) {
			write(t, d, VocabName, `{"a": 0, "b": 1}`)
			write(t, d, MergesName, "#version: 0.2\n")
		}, ErrUnsupported},
		{"vocab not JSON", func(t *testing.T, d string) {
			write(t, d, VocabName, `{"a": 0,`)
			write(t, d, MergesName, "#version: 0.2\n")
		}, ErrFormat},
		{"another tokenizer class", func(t *testing.T, d string) {
			copyFile(t, filepath.Join(clip, VocabName), filepath.Join(d, VocabName))
			copyFile(t, filepath.Join(clip, MergesName), filepath.Join(d, MergesName))
			write(t, d, TokenizerConfigName, `{"tokenizer_class": "T5Tokenizer"}`)
		}, ErrUnsupported},
		{"lstrip special token", func(t *testing.T, d string) {
			copyFile(t, filepath.Join(clip, VocabName), filepath.Join(d, VocabName))
			copyFile(t, filepath.Join(clip, MergesName), filepath.Join(d, MergesName))
			write(t, d, TokenizerConfigName, `{"eos_token": {"content": "<|endoftext|>", "lstrip": true}}`)
		}, ErrUnsupported},
		{"special token outside the vocabulary", func(t *testing.T, d string) {
			copyFile(t, filepath.Join(clip, VocabName), filepath.Join(d, VocabName))
			copyFile(t, filepath.Join(clip, MergesName), filepath.Join(d, MergesName))
			write(t, d, TokenizerConfigName, `{"pad_token": "<pad>"}`)
		}, ErrUnsupported},
		{"tokenizer.json of another pipeline", func(t *testing.T, d string) {
			data, err := os.ReadFile(filepath.Join(goldenDir, "tokenizer_json", TokenizerJSONName))
			if err != nil {
				t.Fatal(err)
			}
			s := strings.Replace(string(data), `{"type":"Lowercase"}`, `{"type":"Strip"}`, 1)
			if s == string(data) {
				t.Fatal("fixture has no Lowercase normalizer")
			}
			write(t, d, TokenizerJSONName, s)
		}, ErrUnsupported},
		{"tokenizer.json WordPiece", func(t *testing.T, d string) {
			write(t, d, TokenizerJSONName, `{"model": {"type": "WordPiece", "vocab": {"a": 0}}}`)
		}, ErrUnsupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := t.TempDir()
			c.setup(t, d)
			tok, err := Load(d)
			if !errors.Is(err, c.want) {
				t.Fatalf("Load = %v, %v; want an error wrapping %v", tok, err, c.want)
			}
			t.Log(err)
		})
	}
}

// FuzzEncode checks that any input encodes without panicking into ids of the vocabulary, framed by
// <|startoftext|> and <|endoftext|>, and that tokenisation is deterministic.
func FuzzEncode(f *testing.F) {
	tok, err := Load(filepath.Join(goldenDir, "clip"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "a photo of a cat", "<|endoftext|>>", "\xff\xfe", "don't!!!", "\u0130\u03a3",
		strings.Repeat("ab", 500), "\U0001f468\u200d\U0001f469", "<|startoftext|<|endoftext|>"} {
		f.Add(s)
	}
	n := tok.VocabSize()
	f.Fuzz(func(t *testing.T, s string) {
		e := tok.Encode(s, 77)
		if len(e.IDs) < 2 || len(e.IDs) > 77 || e.IDs[0] != tok.BOS() || e.IDs[len(e.IDs)-1] != tok.EOS() {
			t.Fatalf("%q: ids %v", s, e.IDs)
		}
		for _, id := range e.IDs {
			if id < 0 || id >= n {
				t.Fatalf("%q: id %d outside the vocabulary", s, id)
			}
		}
		if again := tok.Encode(s, 77); !slices.Equal(again.IDs, e.IDs) {
			t.Fatalf("%q: not deterministic", s)
		}
		if utf8.ValidString(s) && s != "" && e.Tokens == 0 && strings.TrimFunc(s, func(r rune) bool { return isSpace(r) }) != "" {
			t.Fatalf("%q: no tokens for a non-blank text", s)
		}
	})
}
