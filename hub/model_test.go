package hub

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestWeightCandidates(t *testing.T) {
	if got, want := WeightCandidates(false), []string{"model.safetensors", "pytorch_model.bin"}; !reflect.DeepEqual(got, want) {
		t.Errorf("WeightCandidates(false) = %v, want %v", got, want)
	}
	want := []string{"model.fp16.safetensors", "pytorch_model.fp16.bin", "model.safetensors", "pytorch_model.bin"}
	if got := WeightCandidates(true); !reflect.DeepEqual(got, want) {
		t.Errorf("WeightCandidates(true) = %v, want %v", got, want)
	}
}

func TestFetchModel(t *testing.T) {
	processor := []byte(`{"crop_size": 224, "image_mean": [0.48145466, 0.4578275, 0.40821073]}`)
	fp16 := randomBytes(150_000)
	tests := []struct {
		name          string
		files         map[string]fakeFile
		subfolder     string
		preferFP16    bool
		wantWeights   string // repository path of the weights that must be in modelDir
		wantProcessor string // repository path, "" for none
	}{
		{
			name: "model repository",
			files: map[string]fakeFile{
				"config.json":              {content: configJSON},
				"model.safetensors":        {content: weightsBin, lfs: true},
				"pytorch_model.bin":        {content: randomBytes(1000), lfs: true},
				"preprocessor_config.json": {content: processor},
			},
			wantWeights:   "model.safetensors",
			wantProcessor: "preprocessor_config.json",
		},
		{
			name: "pytorch weights only, no processor config",
			files: map[string]fakeFile{
				"config.json":       {content: configJSON},
				"pytorch_model.bin": {content: weightsBin, lfs: true},
			},
			wantWeights: "pytorch_model.bin",
		},
		{
			name: "pipeline repository: processor config in feature_extractor",
			files: map[string]fakeFile{
				"safety_checker/config.json":                 {content: configJSON},
				"safety_checker/model.safetensors":           {content: weightsBin, lfs: true},
				"safety_checker/model.fp16.safetensors":      {content: fp16, lfs: true},
				"feature_extractor/preprocessor_config.json": {content: processor},
				"unet/config.json":                           {content: []byte("{}")},
			},
			subfolder:     "safety_checker",
			wantWeights:   "safety_checker/model.safetensors",
			wantProcessor: "feature_extractor/preprocessor_config.json",
		},
		{
			name: "fp16 variant preferred",
			files: map[string]fakeFile{
				"safety_checker/config.json":                 {content: configJSON},
				"safety_checker/model.safetensors":           {content: weightsBin, lfs: true},
				"safety_checker/model.fp16.safetensors":      {content: fp16, lfs: true},
				"feature_extractor/preprocessor_config.json": {content: processor},
			},
			subfolder:     "/safety_checker/",
			preferFP16:    true,
			wantWeights:   "safety_checker/model.fp16.safetensors",
			wantProcessor: "feature_extractor/preprocessor_config.json",
		},
		{
			name: "fp16 preferred but absent",
			files: map[string]fakeFile{
				"config.json":       {content: configJSON},
				"model.safetensors": {content: weightsBin, lfs: true},
			},
			preferFP16:  true,
			wantWeights: "model.safetensors",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHub(t, tt.files)
			c := h.client(t)
			for _, offline := range []bool{false, true} {
				c.Offline = offline
				if offline {
					c.Endpoint = noNetwork(t).URL
				}
				modelDir, proc, err := FetchModel(context.Background(), c, h.repo, "", tt.subfolder, tt.preferFP16)
				if err != nil {
					t.Fatalf("FetchModel (offline %v): %v", offline, err)
				}
				snap := filepath.Join(cacheFolder(c.CacheDir, h.repo), "snapshots", h.commit)
				if want := filepath.Join(snap, strings.Trim(tt.subfolder, "/")); modelDir != want {
					t.Errorf("modelDir = %s, want %s", modelDir, want)
				}
				weights := filepath.Join(snap, tt.wantWeights)
				if data, err := os.ReadFile(weights); err != nil || string(data) != string(tt.files[tt.wantWeights].content) {
					t.Errorf("weights %s: %v", weights, err)
				}
				if filepath.Dir(weights) != modelDir {
					t.Errorf("weights %s not in modelDir %s", weights, modelDir)
				}
				if tt.wantProcessor == "" {
					if proc != "" {
						t.Errorf("processor config = %q, want none", proc)
					}
				} else if want := filepath.Join(snap, tt.wantProcessor); proc != want {
					t.Errorf("processor config = %q, want %q", proc, want)
				}
				// Only the chosen weights are fetched.
				for name := range tt.files {
					if strings.HasSuffix(name, ".bin") || strings.HasSuffix(name, ".safetensors") {
						_, err := os.Stat(filepath.Join(snap, name))
						if (name == tt.wantWeights) != (err == nil) {
							t.Errorf("%s cached: %v", name, err == nil)
						}
					}
				}
			}
		})
	}
}

func TestFetchModelDefaultRepo(t *testing.T) {
	files := map[string]fakeFile{
		"config.json":              {content: configJSON},
		"pytorch_model.bin":        {content: weightsBin, lfs: true},
		"preprocessor_config.json": {content: []byte("{}")},
	}
	commit := randomHex(40)
	cache := t.TempDir()
	prefillCache(t, cache, DefaultRepo, "main", commit, files)
	c := &Client{Endpoint: noNetwork(t).URL, CacheDir: cache, Offline: true}
	dir, proc, err := FetchModel(context.Background(), c, "", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cacheFolder(cache, DefaultRepo), "snapshots", commit); dir != want || proc != filepath.Join(want, "preprocessor_config.json") {
		t.Errorf("FetchModel = %s, %s", dir, proc)
	}
}

func TestFirstAvailable(t *testing.T) {
	files := map[string]fakeFile{
		"sub/config.json":       {content: configJSON},
		"sub/pytorch_model.bin": {content: weightsBin, lfs: true},
	}
	h := newFakeHub(t, files)
	c := h.client(t)
	ctx := context.Background()

	got, err := c.FirstAvailable(ctx, h.repo, "main", "sub", WeightCandidates(true))
	if err != nil || got != "sub/pytorch_model.bin" {
		t.Fatalf("FirstAvailable = %q, %v; want sub/pytorch_model.bin", got, err)
	}
	// The 404s are recorded in .no_exist.
	for _, name := range []string{"model.fp16.safetensors", "pytorch_model.fp16.bin", "model.safetensors"} {
		if _, err := os.Stat(filepath.Join(cacheFolder(c.CacheDir, h.repo), ".no_exist", h.commit, "sub", name)); err != nil {
			t.Errorf(".no_exist marker for %s: %v", name, err)
		}
	}
	if _, err := c.FirstAvailable(ctx, h.repo, "main", "", []string{"a.bin", "b.bin"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("FirstAvailable of missing files = %v, want ErrNotFound", err)
	}

	// At a commit hash, what the cache knows needs no request.
	if _, err := c.Download(ctx, h.repo, "main", "sub/pytorch_model.bin"); err != nil {
		t.Fatal(err)
	}
	n := len(h.requests(""))
	if got, err := c.FirstAvailable(ctx, h.repo, h.commit, "sub", WeightCandidates(true)); err != nil || got != "sub/pytorch_model.bin" {
		t.Errorf("FirstAvailable at the commit = %q, %v", got, err)
	}
	if m := len(h.requests("")); m != n {
		t.Errorf("%d requests for files known from the cache", m-n)
	}

	// A private repository without a token: the error says a token may be needed.
	h.token = "hf_secret"
	fresh := h.client(t)
	_, err = fresh.FirstAvailable(ctx, h.repo, "main", "sub", WeightCandidates(false))
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Errorf("FirstAvailable without a token = %v, want ErrUnauthorized mentioning HF_TOKEN", err)
	}
	// ... but what is cached is still found.
	c.Token = ""
	if got, err := c.FirstAvailable(ctx, h.repo, "main", "sub", WeightCandidates(false)); err != nil || got != "sub/pytorch_model.bin" {
		t.Errorf("FirstAvailable from the cache after a 401 = %q, %v", got, err)
	}
	fresh.Token = "hf_secret"
	if got, err := fresh.FirstAvailable(ctx, h.repo, "main", "sub", WeightCandidates(false)); err != nil || got != "sub/pytorch_model.bin" {
		t.Errorf("FirstAvailable with the token = %q, %v", got, err)
	}

	// Offline: the first cached candidate.
	c.Offline, c.Endpoint = true, noNetwork(t).URL
	if got, err := c.FirstAvailable(ctx, h.repo, "main", "sub", WeightCandidates(true)); err != nil || got != "sub/pytorch_model.bin" {
		t.Errorf("FirstAvailable offline = %q, %v", got, err)
	}
}

// TestTokenFromEnvironment: a 401 without a token, then success with HF_TOKEN read by NewClient.
func TestTokenFromEnvironment(t *testing.T) {
	h := newFakeHub(t, testFiles())
	h.token = "hf_from_env"
	cache := t.TempDir()
	t.Setenv("HF_ENDPOINT", h.hub.URL+"/")
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_HOME", t.TempDir())
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", "")
	t.Setenv("HF_HUB_OFFLINE", "")
	t.Setenv("TRANSFORMERS_OFFLINE", "")
	t.Setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "")

	_, err := NewClient().Download(context.Background(), h.repo, "main", "model.safetensors")
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Fatalf("without a token: %v, want ErrUnauthorized mentioning HF_TOKEN", err)
	}

	t.Setenv("HF_TOKEN", "hf_from_env\n")
	c := NewClient()
	if c.Endpoint != h.hub.URL || c.CacheDir != cache || c.Token != "hf_from_env" {
		t.Fatalf("NewClient = %+v", c)
	}
	got, err := c.Download(context.Background(), h.repo, "main", "model.safetensors")
	if err != nil {
		t.Fatalf("with HF_TOKEN: %v", err)
	}
	checkCachedFile(t, cache, h.repo, h.commit, "model.safetensors", h.files["model.safetensors"], got)
	for _, r := range h.requests("cdn") {
		if r.auth != "" {
			t.Error("token sent to the content host")
		}
	}

	// A nil client is NewClient(); offline it finds what was just downloaded.
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HF_HUB_OFFLINE", "1")
	var nilClient *Client
	if p, err := nilClient.Download(context.Background(), h.repo, "main", "model.safetensors"); err != nil || p != got {
		t.Errorf("nil client offline = %q, %v", p, err)
	}
}

// TestFetchModelOneHeadPerFileAndRedirectSize: the weights file's metadata is asked for once (the
// candidate search's HEAD serves the download), and a redirect that carries no X-Linked-Size but a
// Content-Length of its own (a mirror's or proxy's) does not become the file's expected size.
func TestFetchModelOneHeadPerFileAndRedirectSize(t *testing.T) {
	for _, noLinkedSize := range []bool{false, true} {
		h := newFakeHub(t, map[string]fakeFile{
			"config.json":       {content: configJSON},
			"model.safetensors": {content: weightsBin, lfs: true},
		})
		h.noLinkedSize = noLinkedSize
		c := h.client(t)
		modelDir, _, err := FetchModel(context.Background(), c, h.repo, "", "", false)
		if err != nil {
			t.Fatalf("noLinkedSize=%v: %v", noLinkedSize, err)
		}
		if data, err := os.ReadFile(filepath.Join(modelDir, "model.safetensors")); err != nil || string(data) != string(weightsBin) {
			t.Errorf("noLinkedSize=%v: weights: %v (%d bytes)", noLinkedSize, err, len(data))
		}
		heads := 0
		for _, e := range h.requests("hub") {
			if e.method == http.MethodHead && strings.HasSuffix(e.path, "/model.safetensors") {
				heads++
			}
		}
		if heads != 1 {
			t.Errorf("noLinkedSize=%v: %d HEAD requests for the weights, want 1", noLinkedSize, heads)
		}
	}
}

func TestFetchTextModel(t *testing.T) {
	vocab, merges := []byte(`{"a": 0}`), []byte("#version: 0.2\na b\n")
	tokJSON, tokCfg := []byte(`{"model": {"type": "BPE"}}`), []byte(`{"model_max_length": 77}`)
	tests := []struct {
		name       string
		files      map[string]fakeFile
		subfolder  string
		wantTokDir string   // repository folder of the tokenizer
		wantTok    []string // repository paths that must be cached
		notFetched []string // repository paths that must not be
	}{
		{
			name: "CLIP model repository: tokenizer.json next to the model",
			files: map[string]fakeFile{
				"config.json":           {content: configJSON},
				"model.safetensors":     {content: weightsBin, lfs: true},
				"tokenizer.json":        {content: tokJSON},
				"vocab.json":            {content: vocab},
				"merges.txt":            {content: merges},
				"tokenizer_config.json": {content: tokCfg},
			},
			wantTok:    []string{"tokenizer.json", "tokenizer_config.json"},
			notFetched: []string{"vocab.json", "merges.txt"},
		},
		{
			name: "pipeline: text_encoder with the sibling tokenizer/ (vocab and merges)",
			files: map[string]fakeFile{
				"text_encoder/config.json":        {content: configJSON},
				"text_encoder/model.safetensors":  {content: weightsBin, lfs: true},
				"tokenizer/vocab.json":            {content: vocab},
				"tokenizer/merges.txt":            {content: merges},
				"tokenizer/tokenizer_config.json": {content: tokCfg},
				"unet/config.json":                {content: []byte("{}")},
			},
			subfolder:  "text_encoder",
			wantTokDir: "tokenizer",
			wantTok:    []string{"tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json"},
			notFetched: []string{"unet/config.json"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHub(t, tt.files)
			c := h.client(t)
			for _, offline := range []bool{false, true} {
				c.Offline = offline
				if offline {
					c.Endpoint = noNetwork(t).URL
				}
				modelDir, tokDir, err := FetchTextModel(context.Background(), c, h.repo, "", tt.subfolder, false)
				if err != nil {
					t.Fatalf("FetchTextModel (offline %v): %v", offline, err)
				}
				snap := filepath.Join(cacheFolder(c.CacheDir, h.repo), "snapshots", h.commit)
				if want := filepath.Join(snap, tt.subfolder); modelDir != want {
					t.Errorf("modelDir = %s, want %s", modelDir, want)
				}
				if want := filepath.Join(snap, tt.wantTokDir); tokDir != want {
					t.Errorf("tokenizerDir = %s, want %s", tokDir, want)
				}
				for _, name := range tt.wantTok {
					if data, err := os.ReadFile(filepath.Join(snap, name)); err != nil || string(data) != string(tt.files[name].content) {
						t.Errorf("%s: %v", name, err)
					}
				}
				for _, name := range tt.notFetched {
					if _, err := os.Stat(filepath.Join(snap, name)); err == nil {
						t.Errorf("%s fetched, want not", name)
					}
				}
			}
		})
	}

	t.Run("no tokenizer", func(t *testing.T) {
		h := newFakeHub(t, map[string]fakeFile{
			"config.json":       {content: configJSON},
			"model.safetensors": {content: weightsBin, lfs: true},
		})
		_, _, err := FetchTextModel(context.Background(), h.client(t), h.repo, "", "", false)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no tokenizer") {
			t.Errorf("err = %v, want ErrNotFound naming the tokenizer", err)
		}
	})
}
