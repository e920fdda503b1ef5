package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// resolveModel returns a local model directory for c.model: an existing directory (plus -subfolder),
// or a hub repo id fetched into (or found in) the Hugging Face cache.
func resolveModel(ctx context.Context, c config, stderr io.Writer) (string, error) {
	if st, err := os.Stat(c.model); err == nil && st.IsDir() {
		return filepath.Join(c.model, c.subfolder), nil
	}
	return "", fmt.Errorf("model %q: no such directory", c.model)
}
