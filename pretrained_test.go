package safety

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sdsafety/safety/hub"
)

// prefillHubCache writes files (repository path → local source file) into a Hugging Face cache at
// cacheDir as repo's "main" revision, the way huggingface_hub lays it out, and returns cacheDir.
func prefillHubCache(t *testing.T, cacheDir, repo string, files map[string]string) {
	t.Helper()
	const commit = "0123456789abcdef0123456789abcdef01234567"
	root := filepath.Join(cacheDir, "models--"+strings.ReplaceAll(repo, "/", "--"))
	if err := os.MkdirAll(filepath.Join(root, "refs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "refs", "main"), []byte(commit), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, "snapshots", commit, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTextEncoderFromPretrained loads the golden tiny CLIP text model by hub name from an offline
// cache, as a CLIP repository and as a pipeline's text_encoder/ with its sibling tokenizer/, and by
// local directory; each gives the golden embeddings (pooled outputs without a projection).
func TestTextEncoderFromPretrained(t *testing.T) {
	src := filepath.Join(textGoldenDir, "clip")
	cache := t.TempDir()
	file := func(name string) string { return filepath.Join(src, name) }
	prefillHubCache(t, cache, "test/clip", map[string]string{
		"config.json": file("config.json"), "model.safetensors": file("model.safetensors"),
		"vocab.json": file("vocab.json"), "merges.txt": file("merges.txt"), "tokenizer_config.json": file("tokenizer_config.json"),
	})
	prefillHubCache(t, cache, "test/pipeline", map[string]string{
		// The pipeline layout with the golden CLIP's files (TestTextEncoderPipelineLayout covers a
		// projection-free CLIPTextModel there): what matters here is where the tokenizer is fetched from.
		"text_encoder/config.json":       file("config.json"),
		"text_encoder/model.safetensors": file("model.safetensors"),
		"tokenizer/vocab.json":           file("vocab.json"), "tokenizer/merges.txt": file("merges.txt"),
		"tokenizer/tokenizer_config.json": file("tokenizer_config.json"),
	})
	client := &hub.Client{CacheDir: cache, Offline: true}
	g := readTextGolden(t)
	for _, tc := range []struct {
		name, model string
		opts        []Option
		wantTokDir  string
	}{
		{"hub CLIP repository", "test/clip", nil, ""},
		{"hub pipeline text_encoder", "test/pipeline", []Option{WithSubfolder("text_encoder")}, "tokenizer"},
		{"local directory", src, nil, src},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := TextEncoderFromPretrained(context.Background(), tc.model, append(tc.opts, WithHubClient(client))...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { e.Close() })
			if !strings.HasSuffix(e.Info().TokenizerDir, tc.wantTokDir) {
				t.Errorf("TokenizerDir %s, want …%s", e.Info().TokenizerDir, tc.wantTokDir)
			}
			res, err := e.EmbedTexts(context.Background(), []string{g.Texts[0].Text})
			if err != nil {
				t.Fatal(err)
			}
			if d := vecRelErr(res[0].PooledOutput, g.Texts[0].PooledOutput); d > textTol {
				t.Errorf("pooled output: relative error %.2e", d)
			}
		})
	}
	if _, err := TextEncoderFromPretrained(context.Background(), "test/missing", WithHubClient(client)); !errors.Is(err, hub.ErrNotCached) {
		t.Errorf("missing repository offline: %v, want ErrNotCached", err)
	}
	if _, err := TextEncoderFromPretrained(context.Background(), "not a repo id"); err == nil {
		t.Error("a name that is neither a directory nor a repo id was accepted")
	}
}
