// Package cmdutil holds what the module's commands share: the JSON record of one checked input
// (safetycheck's -json lines, safetyd's responses) and the way a -model flag resolves to a checker.
package cmdutil

import (
	"context"
	"encoding/base64"
	"io"
	"os"
	"unicode/utf8"

	"github.com/sdsafety/safety"
	"github.com/sdsafety/safety/hub"
)

// Record is the JSON object of one input: its name, and either the error that kept it from being
// checked or the result's fields (those of [safety.Result]) inline. JSON strings are UTF-8, so a name
// that is not valid UTF-8 is written with U+FFFD in File and, losslessly, base64-encoded in
// FileBase64 (two such names can differ only there).
type Record struct {
	File       string `json:"file"`
	FileBase64 string `json:"file_base64,omitempty"`
	Error      string `json:"error,omitempty"`
	*safety.Result
}

// NewRecord is the record of file: the error when err is not nil, else the result.
func NewRecord(file string, result *safety.Result, err error) Record {
	r := Record{File: file}
	if !utf8.ValidString(file) {
		r.FileBase64 = base64.StdEncoding.EncodeToString([]byte(file))
	}
	if err != nil {
		r.Error = err.Error()
	} else {
		r.Result = result
	}
	return r
}

// Model names a checker the way the commands' flags do.
type Model struct {
	Name      string // a local directory in Hugging Face layout, or a hub repository id
	Subfolder string // the checker's folder inside it ("safety_checker" in a pipeline), or ""
	Revision  string // hub branch, tag or commit
	Quiet     bool   // no download progress bar
}

// Load resolves m like diffusers' from_pretrained (a directory is loaded as it is; a repository id
// is fetched once into the shared Hugging Face cache, honouring HF_HUB_OFFLINE and the other HF_*
// variables, with a progress bar when stderr is a terminal) and loads the checker with opts.
func Load(ctx context.Context, m Model, stderr io.Writer, opts ...safety.Option) (*safety.Checker, error) {
	client := hub.NewClient()
	if f, ok := stderr.(*os.File); ok && !m.Quiet && hub.IsTerminal(f) {
		client.Progress = hub.NewTextProgress(stderr).Update
	}
	opts = append(opts, safety.WithSubfolder(m.Subfolder), safety.WithRevision(m.Revision), safety.WithHubClient(client))
	return safety.FromPretrained(ctx, m.Name, opts...)
}
