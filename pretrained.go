package safety

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sdsafety/safety/hub"
)

// DefaultModel is the Hugging Face repository of the checker Stable Diffusion pipelines use.
const DefaultModel = hub.DefaultRepo

// FromPretrained loads a checker by name, the way diffusers' from_pretrained does: model is a local
// directory in Hugging Face layout, or a hub repository id ("" means [DefaultModel]). A repository is
// fetched once into the Hugging Face cache that huggingface_hub, diffusers and transformers share
// (HF_HUB_CACHE, HF_HOME, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE are honoured), so a model they
// fetched before is used without a download. Only config.json, preprocessor_config.json and the
// best weights file are fetched (the fp16 variant first when computing in float16).
//
// WithSubfolder selects the checker inside a pipeline repository ("safety_checker"; the processor
// configuration then comes from its sibling "feature_extractor"), WithRevision a branch, tag or
// commit, WithHubClient a configured client (endpoint, token, progress). The other options are those
// of [Load].
func FromPretrained(ctx context.Context, model string, opts ...Option) (*Checker, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	if model == "" {
		model = DefaultModel
	}
	if st, err := os.Stat(model); err == nil && st.IsDir() {
		dir := filepath.Join(model, o.subfolder)
		if o.processor == "" && filepath.Base(o.subfolder) == "safety_checker" {
			p := filepath.Join(model, filepath.Dir(o.subfolder), "feature_extractor", "preprocessor_config.json")
			if _, err := os.Stat(p); err == nil {
				opts = append(opts, WithProcessorConfig(p))
			}
		}
		return Load(dir, opts...)
	}
	if !hub.IsRepoID(model) {
		return nil, fmt.Errorf("safety: model %q is neither a directory nor a hub repository id (org/name)", model)
	}
	dir, proc, err := hub.FetchModel(ctx, o.hub, model, o.revision, o.subfolder, o.dtype == Float16)
	if err != nil {
		return nil, fmt.Errorf("safety: fetch %s: %w", model, err)
	}
	if proc != "" && o.processor == "" {
		opts = append(opts, WithProcessorConfig(proc))
	}
	return Load(dir, opts...)
}

// DefaultTextModel is the CLIP model whose text tower embeds custom concepts in [DefaultModel]'s
// image embedding space.
const DefaultTextModel = hub.CLIPTextRepo

// TextEncoderFromPretrained loads a text encoder by name, as [FromPretrained] loads a checker:
// model is a local directory (see [LoadTextEncoder]) or a hub repository id ("" means
// [DefaultTextModel]), fetched once into the shared Hugging Face cache. Only config.json, the best
// weights file and the tokenizer files (tokenizer.json, else vocab.json and merges.txt; with
// tokenizer_config.json and special_tokens_map.json) are fetched.
//
// WithSubfolder("text_encoder") selects a Stable Diffusion pipeline's text encoder, whose tokenizer
// then comes from the sibling "tokenizer" folder (such an encoder has no projection: see
// [ErrNoProjection]). WithRevision, WithHubClient and WithTokenizerDir apply, and the options of
// LoadTextEncoder.
func TextEncoderFromPretrained(ctx context.Context, model string, opts ...Option) (*TextEncoder, error) {
	o, err := applyOptions(opts)
	if err != nil {
		return nil, err
	}
	if model == "" {
		model = DefaultTextModel
	}
	if st, err := os.Stat(model); err == nil && st.IsDir() {
		return LoadTextEncoder(filepath.Join(model, o.subfolder), opts...)
	}
	if !hub.IsRepoID(model) {
		return nil, fmt.Errorf("safety: model %q is neither a directory nor a hub repository id (org/name)", model)
	}
	dir, tokDir, err := hub.FetchTextModel(ctx, o.hub, model, o.revision, o.subfolder, o.dtype == Float16)
	if err != nil {
		return nil, fmt.Errorf("safety: fetch %s: %w", model, err)
	}
	if o.tokenizerDir == "" {
		opts = append(opts, WithTokenizerDir(tokDir))
	}
	return LoadTextEncoder(dir, opts...)
}

// WithRevision selects the hub revision FromPretrained and TextEncoderFromPretrained fetch (default
// "main").
func WithRevision(rev string) Option {
	return func(o *options) error { o.revision = rev; return nil }
}

// WithSubfolder selects the folder of the checker inside the repository or directory given to
// FromPretrained, e.g. "safety_checker" for a Stable Diffusion pipeline.
func WithSubfolder(dir string) Option {
	return func(o *options) error { o.subfolder = dir; return nil }
}

// WithHubClient sets the hub client FromPretrained uses (default: hub.NewClient(), configured from
// the environment).
func WithHubClient(c *hub.Client) Option {
	return func(o *options) error { o.hub = c; return nil }
}
