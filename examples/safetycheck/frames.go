package main

import (
	"context"
	"fmt"
	"io"

	"github.com/sdsafety/safety"
)

// frameRecord is one frame's verdict in an -all-frames row.
type frameRecord struct {
	Index           int                  `json:"index"`
	NSFW            bool                 `json:"nsfw"`
	SpecialCare     bool                 `json:"special_care"`
	BadConcepts     []int                `json:"bad_concepts"`
	SpecialConcepts []int                `json:"special_concepts"`
	ConceptScores   []float32            `json:"concept_scores"`
	SpecialScores   []float32            `json:"special_scores"`
	CustomScores    []safety.CustomScore `json:"custom_scores,omitempty"`
}

// framesRow is an -all-frames JSON row of an input that was checked: nsfw and special_care are true
// when they are for some frame, flagged_frames lists the frames with nsfw, frames has every frame.
type framesRow struct {
	File          string        `json:"file"`
	FileBase64    string        `json:"file_base64,omitempty"`
	NSFW          bool          `json:"nsfw"`
	SpecialCare   bool          `json:"special_care"`
	FlaggedFrames []int         `json:"flagged_frames"`
	Frames        []frameRecord `json:"frames"`
}

// framesRecord is the -json row of an -all-frames outcome (an error row is the usual one).
func (o outcome) framesRecord() any {
	r := o.record()
	if o.err != nil {
		return r
	}
	row := framesRow{File: r.File, FileBase64: r.FileBase64, FlaggedFrames: flaggedFrames(o.frames), Frames: make([]frameRecord, len(o.frames))}
	for i, f := range o.frames {
		row.NSFW = row.NSFW || f.NSFW
		row.SpecialCare = row.SpecialCare || f.SpecialCare
		row.Frames[i] = frameRecord{Index: i, NSFW: f.NSFW, SpecialCare: f.SpecialCare, BadConcepts: f.BadConcepts,
			SpecialConcepts: f.SpecialConcepts, ConceptScores: f.ConceptScores, SpecialScores: f.SpecialScores, CustomScores: f.CustomScores}
	}
	return row
}

func flaggedFrames(frames []safety.Result) []int {
	flagged := []int{}
	for i, f := range frames {
		if f.NSFW {
			flagged = append(flagged, i)
		}
	}
	return flagged
}

// checkAllFrames checks every frame of each input (-all-frames), one input at a time. An outcome's
// result is the first flagged frame's, else frame 0's, so that the verdict (and -fail-on-nsfw) says
// whether any frame is flagged. Once ctx ends no further file is opened.
func checkAllFrames(ctx context.Context, checker *safety.Checker, inputs []string, c config, stderr io.Writer) []outcome {
	outcomes := make([]outcome, len(inputs))
	bar := newProgress(stderr, len(inputs), c.quiet)
	for i, in := range inputs {
		outcomes[i].file = in
		if ctx.Err() != nil {
			outcomes[i].err = interruptError(ctx)
			continue
		}
		res, err := checker.CheckFileFrames(ctx, in)
		if err != nil && ctx.Err() != nil {
			err = interruptError(ctx)
		}
		if err != nil {
			outcomes[i].err = err
		} else {
			outcomes[i].frames = res
			outcomes[i].result = &res[0]
			if f := flaggedFrames(res); len(f) > 0 {
				outcomes[i].result = &res[f[0]]
			}
		}
		bar.add(1)
	}
	bar.finish()
	return outcomes
}

// framesNote is the table's note for an -all-frames outcome: how many frames were flagged, and which.
func framesNote(o outcome) string {
	if o.frames == nil {
		return ""
	}
	f := flaggedFrames(o.frames)
	if len(f) == 0 {
		return fmt.Sprintf("  frames: %d, none flagged", len(o.frames))
	}
	return fmt.Sprintf("  frames: %d, flagged %v (scores of frame %d)", len(o.frames), f, f[0])
}
