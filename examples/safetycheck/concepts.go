package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/sdsafety/safety"
)

// conceptFlag collects -concept NAME=THRESHOLD:TEXT values.
type conceptFlag []customConcept

type customConcept struct {
	name, text string
	threshold  float32
}

func (f *conceptFlag) String() string { return fmt.Sprint(len(*f), " concepts") }

// Set parses NAME=THRESHOLD:TEXT, e.g. "weapon=0.2:a photo of a weapon".
func (f *conceptFlag) Set(v string) error {
	name, rest, ok := strings.Cut(v, "=")
	thr, text, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || name == "" || text == "" {
		return fmt.Errorf("want NAME=THRESHOLD:TEXT, got %q", v)
	}
	t, err := strconv.ParseFloat(thr, 32)
	if err != nil {
		return fmt.Errorf("threshold %q: %v", thr, err)
	}
	*f = append(*f, customConcept{name: name, text: text, threshold: float32(t)})
	return nil
}

// addConcepts embeds the -concept texts with the CLIP text tower of dir (a directory or a hub
// repository id, fetched through the shared cache) and adds them to checker.
// The returned function closes the text encoder.
func addConcepts(ctx context.Context, checker *safety.Checker, dir string, concepts conceptFlag, c config) (func(), error) {
	enc, err := safety.TextEncoderFromPretrained(ctx, dir, safety.WithDevice(safety.Device(c.device)))
	if err != nil {
		return func() {}, fmt.Errorf("text model %s: %w", dir, err)
	}
	if err := checker.SetTextEncoder(enc); err != nil {
		enc.Close()
		return func() {}, err
	}
	for _, cc := range concepts {
		if err := checker.AddConceptContext(ctx, cc.name, cc.text, cc.threshold); err != nil {
			enc.Close()
			return func() {}, fmt.Errorf("concept %q: %w", cc.name, err)
		}
	}
	return func() { enc.Close() }, nil
}
