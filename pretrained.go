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
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
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

// WithRevision selects the hub revision FromPretrained fetches (default "main").
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
