package main

import (
	"context"
	"io"
	"os"

	"github.com/sdsafety/safety"
	"github.com/sdsafety/safety/hub"
)

// load resolves c.model (a local directory, or a hub repo id fetched into the shared Hugging Face
// cache with a progress bar on a terminal) and loads the checker.
func load(ctx context.Context, c config, opts []safety.Option, stderr io.Writer) (*safety.Checker, error) {
	client := hub.NewClient()
	if f, ok := stderr.(*os.File); ok && !c.quiet && hub.IsTerminal(f) {
		client.Progress = hub.NewTextProgress(stderr).Update
	}
	opts = append(opts, safety.WithSubfolder(c.subfolder), safety.WithRevision(c.revision), safety.WithHubClient(client))
	return safety.FromPretrained(ctx, c.model, opts...)
}
