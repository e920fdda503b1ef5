package hub

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// DefaultRepo is the repository of the Stable Diffusion safety checker that diffusers uses.
const DefaultRepo = "CompVis/stable-diffusion-safety-checker"

// WeightCandidates lists the weights files of a transformers model in order of preference:
// model.safetensors, then pytorch_model.bin; with preferFP16 their fp16 variants
// (model.fp16.safetensors, pytorch_model.fp16.bin) come first. Code that picks a weights file from a
// model directory should use the same order.
func WeightCandidates(preferFP16 bool) []string {
	names := []string{"model.safetensors", "pytorch_model.bin"}
	if preferFP16 {
		names = append([]string{"model.fp16.safetensors", "pytorch_model.fp16.bin"}, names...)
	}
	return names
}

// FetchModel makes a checker model of a hub repository available in the cache and returns the local
// directory holding its config.json and weights, and the path of its image processor configuration
// ("" when the repository has none: the caller then uses the defaults).
//
// repo defaults to [DefaultRepo] and revision to "main"; subfolder is the model's folder in the
// repository ("" for a model repository, "safety_checker" for a Stable Diffusion pipeline). It fetches
// subfolder/config.json, the first of [WeightCandidates] that exists, and preprocessor_config.json
// from the subfolder or, when the subfolder is "safety_checker" (a pipeline), from its sibling
// "feature_extractor". All files come from the commit that config.json resolved to; modelDir is
// snapshots/{commit}/{subfolder}. Only the chosen weights file is fetched, but the directory may hold
// other weights files fetched before, so pick the weights in the order of WeightCandidates.
//
// A nil c means NewClient(). Offline (or when the hub cannot be reached) the cached files are used:
// the first cached weights candidate is taken.
func FetchModel(ctx context.Context, c *Client, repo, revision, subfolder string, preferFP16 bool) (modelDir, processorConfigPath string, err error) {
	if repo == "" {
		repo = DefaultRepo
	}
	if revision, subfolder, err = modelArgs(revision, subfolder); err != nil {
		return "", "", err
	}
	s := c.settings()
	configPath, commit, err := s.fetchWeights(ctx, repo, revision, subfolder, preferFP16)
	if err != nil {
		return "", "", err
	}

	candidates := []string{joinRepoPath(subfolder, "preprocessor_config.json")}
	if path.Base(subfolder) == "safety_checker" {
		parent := path.Dir(subfolder)
		if parent == "." {
			parent = ""
		}
		candidates = append(candidates, joinRepoPath(parent, "feature_extractor/preprocessor_config.json"))
	}
	for _, cand := range candidates {
		p, _, err := s.download(ctx, repo, commit, cand, nil)
		if err == nil {
			processorConfigPath = p
			break
		}
		if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNotCached) {
			return "", "", err
		}
	}
	return filepath.Dir(configPath), processorConfigPath, nil
}

// modelArgs applies the defaults of revision ("main") and normalises and checks subfolder.
func modelArgs(revision, subfolder string) (string, string, error) {
	if revision == "" {
		revision = DefaultRevision
	}
	subfolder = strings.Trim(subfolder, "/")
	if subfolder != "" {
		if err := checkRelPath("subfolder", subfolder); err != nil {
			return "", "", err
		}
	}
	return revision, subfolder, nil
}

// fetchWeights fetches subfolder/config.json and the first of [WeightCandidates] that exists, at the
// commit config.json resolved to; it returns config.json's local path and that commit.
func (s *settings) fetchWeights(ctx context.Context, repo, revision, subfolder string, preferFP16 bool) (configPath, commit string, err error) {
	configPath, commit, err = s.download(ctx, repo, revision, joinRepoPath(subfolder, "config.json"), nil)
	if err != nil {
		return "", "", err
	}
	weights, meta, err := s.firstAvailable(ctx, repo, commit, subfolder, WeightCandidates(preferFP16))
	if err != nil {
		return "", "", fmt.Errorf("hub: no weights for the model in %s (subfolder %q): %w", repo, subfolder, err)
	}
	if _, _, err := s.download(ctx, repo, commit, weights, meta); err != nil {
		return "", "", err
	}
	return configPath, commit, nil
}

// CLIPTextRepo is the CLIP model whose text tower and projection embed custom concepts in the
// space of [DefaultRepo]'s image embeddings.
const CLIPTextRepo = "openai/clip-vit-large-patch14"

// FetchTextModel makes a CLIP text model of a hub repository available in the cache, as
// [FetchModel] does a checker, and returns the local directory holding its config.json and weights
// and the one holding its tokenizer files.
//
// repo defaults to [CLIPTextRepo] and revision to "main". subfolder is the model's folder: "" for a
// CLIP model repository (the tokenizer files are next to the model), "text_encoder" for a Stable
// Diffusion pipeline (the tokenizer comes from its sibling "tokenizer"). The tokenizer is
// tokenizer.json when the repository has it, else vocab.json and merges.txt; tokenizer_config.json
// and special_tokens_map.json are fetched when present. All files come from the commit that
// config.json resolved to. A nil c means NewClient(); offline the cached files are used.
func FetchTextModel(ctx context.Context, c *Client, repo, revision, subfolder string, preferFP16 bool) (modelDir, tokenizerDir string, err error) {
	if repo == "" {
		repo = CLIPTextRepo
	}
	if revision, subfolder, err = modelArgs(revision, subfolder); err != nil {
		return "", "", err
	}
	s := c.settings()
	configPath, commit, err := s.fetchWeights(ctx, repo, revision, subfolder, preferFP16)
	if err != nil {
		return "", "", err
	}
	tokFolder := subfolder
	if path.Base(subfolder) == "text_encoder" {
		if tokFolder = path.Dir(subfolder); tokFolder == "." {
			tokFolder = ""
		}
		tokFolder = joinRepoPath(tokFolder, "tokenizer")
	}
	// tokenizer.json, else vocab.json with merges.txt.
	first, meta, err := s.firstAvailable(ctx, repo, commit, tokFolder, []string{"tokenizer.json", "vocab.json"})
	if err != nil {
		return "", "", fmt.Errorf("hub: no tokenizer (tokenizer.json, or vocab.json and merges.txt) in %s (folder %q): %w",
			repo, tokFolder, err)
	}
	tokPath, _, err := s.download(ctx, repo, commit, first, meta)
	if err != nil {
		return "", "", err
	}
	if path.Base(first) == "vocab.json" {
		if _, _, err := s.download(ctx, repo, commit, joinRepoPath(tokFolder, "merges.txt"), nil); err != nil {
			return "", "", err
		}
	}
	for _, name := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
		if _, _, err := s.download(ctx, repo, commit, joinRepoPath(tokFolder, name), nil); err != nil &&
			!errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNotCached) {
			return "", "", err
		}
	}
	return filepath.Dir(configPath), filepath.Dir(tokPath), nil
}
