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
	if revision == "" {
		revision = DefaultRevision
	}
	subfolder = strings.Trim(subfolder, "/")
	if subfolder != "" {
		if err := checkRelPath("subfolder", subfolder); err != nil {
			return "", "", err
		}
	}
	s := c.settings()

	configPath, commit, err := s.download(ctx, repo, revision, joinRepoPath(subfolder, "config.json"), nil)
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
