package checkpoint

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Weight file names, as diffusers and transformers write them.
const (
	SafetensorsName     = "model.safetensors"
	TorchName           = "pytorch_model.bin"
	SafetensorsFP16Name = "model.fp16.safetensors"
	TorchFP16Name       = "pytorch_model.fp16.bin"
)

// WeightNames returns the file names FindWeights tries, most preferred first: the full-precision
// files then the fp16 variants, or the fp16 variants first when preferFP16; within each precision
// safetensors comes before .bin.
func WeightNames(preferFP16 bool) []string {
	full := []string{SafetensorsName, TorchName}
	half := []string{SafetensorsFP16Name, TorchFP16Name}
	if preferFP16 {
		return append(half, full...)
	}
	return append(full, half...)
}

// FindWeights returns the path of the weights file in the model directory dir, the first of
// [WeightNames](preferFP16) that exists as a regular file (symbolic links, as in the Hugging Face
// cache, are followed). When none does, the error wraps [ErrNotFound] and lists the names looked for;
// a sharded checkpoint (an *.index.json) is reported as such, since it is not supported.
func FindWeights(dir string, preferFP16 bool) (string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("checkpoint: model directory: %w", err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("checkpoint: %s: %w: not a directory", dir, ErrNotFound)
	}
	names := WeightNames(preferFP16)
	for _, name := range names {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		switch {
		case err == nil && st.Mode().IsRegular():
			return p, nil
		case err == nil:
			return "", fmt.Errorf("checkpoint: %s: %w: not a regular file", p, ErrFormat)
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("checkpoint: %w", err)
		}
	}
	var sharded string
	for _, idx := range []string{SafetensorsName + ".index.json", TorchName + ".index.json"} {
		if _, err := os.Stat(filepath.Join(dir, idx)); err == nil {
			sharded += "; found " + idx + ": sharded checkpoints are not supported"
		}
	}
	return "", fmt.Errorf("checkpoint: %s: %w: no weights file (looked for %s)%s", dir, ErrNotFound, strings.Join(names, ", "), sharded)
}
