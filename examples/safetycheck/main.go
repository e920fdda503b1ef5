// Command safetycheck checks images with the Stable Diffusion safety checker.
//
//	safetycheck [flags] FILE|DIR...
//
// A directory argument means every image file in it (sorted by name). With -json it prints one JSON
// object per input, in input order; for an input that could not be checked the object holds only
// "file" and "error". Exit status: 0 when every input was checked (whatever the verdicts), 1 when some
// input could not be checked, 2 for usage errors, 3 with -fail-on-nsfw when an image was flagged.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/sdsafety/safety"
	"github.com/sdsafety/safety/internal/cmdutil"
)

const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitFlagged  = 3
	defaultModel = safety.DefaultModel
)

type config struct {
	model, subfolder, revision string
	jsonOut                    bool
	pixelsDir                  string
	device, dtype              string
	batch, threads             int
	adjustment                 float64
	failOnNSFW                 bool
	orientation                bool
	quiet                      bool
	textModel                  string
	concepts                   conceptFlag
	conceptsCount              bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("safetycheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.model, "model", defaultModel, "model: a local directory in Hugging Face layout, or a hub repo id")
	fs.StringVar(&c.subfolder, "subfolder", "", "subfolder of the model repo or directory holding the checker (e.g. safety_checker)")
	fs.StringVar(&c.revision, "revision", "main", "hub revision (branch, tag or commit)")
	fs.BoolVar(&c.jsonOut, "json", false, "print JSON Lines, one object per input")
	fs.StringVar(&c.pixelsDir, "pixels", "", "also write each input's preprocessed pixels to DIR/<name>.pixel_values.f32")
	fs.StringVar(&c.device, "device", "auto", "auto, cpu or cuda")
	fs.StringVar(&c.dtype, "dtype", "float32", "float32, float16 or bfloat16")
	fs.IntVar(&c.batch, "batch", 8, "images per model call")
	fs.IntVar(&c.threads, "threads", 0, "libtorch threads (0: libtorch's default)")
	fs.Float64Var(&c.adjustment, "adjustment", 0, "added to every concept score (positive: stricter)")
	fs.BoolVar(&c.failOnNSFW, "fail-on-nsfw", false, "exit with status 3 when an image is flagged")
	fs.BoolVar(&c.orientation, "exif-orientation", false, "apply EXIF orientation (the reference does not)")
	fs.BoolVar(&c.quiet, "q", false, "no progress output")
	fs.StringVar(&c.textModel, "text-model", "", "CLIP checkpoint directory (openai/clip-vit-large-patch14 layout) for -concept")
	fs.Var(&c.concepts, "concept", "custom concept NAME=THRESHOLD:TEXT, scored with the CLIP text tower of -text-model (repeatable)")
	fs.BoolVar(&c.conceptsCount, "concepts-count", false, "a custom concept hit makes the image NSFW")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: safetycheck [flags] FILE|DIR...\n\nChecks images with the Stable Diffusion safety checker.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "safetycheck: no input files")
		fs.Usage()
		return exitUsage
	}
	opts := []safety.Option{
		safety.WithDevice(safety.Device(c.device)),
		safety.WithDType(safety.DType(c.dtype)),
		safety.WithBatchSize(c.batch),
		safety.WithAdjustment(float32(c.adjustment)),
		safety.WithEXIFOrientation(c.orientation),
	}
	if c.threads > 0 {
		opts = append(opts, safety.WithThreads(c.threads))
	}
	if len(c.concepts) > 0 && c.textModel == "" {
		fmt.Fprintln(stderr, "safetycheck: -concept needs -text-model")
		return exitUsage
	}
	opts = append(opts, safety.WithCustomConceptsCount(c.conceptsCount))
	inputs, err := expandInputs(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "safetycheck: %v\n", err)
		return exitUsage
	}
	if c.pixelsDir != "" {
		if err := os.MkdirAll(c.pixelsDir, 0o755); err != nil {
			fmt.Fprintf(stderr, "safetycheck: %v\n", err)
			return exitUsage
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	checker, err := cmdutil.Load(ctx, cmdutil.Model{Name: c.model, Subfolder: c.subfolder, Revision: c.revision, Quiet: c.quiet},
		stderr, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "safetycheck: load %s: %v\n", c.model, err)
		if errors.Is(err, safety.ErrInvalidOption) {
			return exitUsage
		}
		return exitFailed
	}
	defer checker.Close()
	if len(c.concepts) > 0 {
		closeText, err := addConcepts(ctx, checker, c.textModel, c.concepts, c)
		defer closeText()
		if err != nil {
			fmt.Fprintf(stderr, "safetycheck: %v\n", err)
			return exitFailed
		}
	}

	outcomes := checkAll(ctx, checker, inputs, c, stderr)
	code := exitOK
	if c.jsonOut {
		enc := json.NewEncoder(stdout)
		for _, o := range outcomes {
			if err := enc.Encode(o.record()); err != nil {
				fmt.Fprintf(stderr, "safetycheck: %v\n", err)
				return exitFailed
			}
		}
	} else {
		printTable(stdout, outcomes)
	}
	for _, o := range outcomes {
		if o.err != nil {
			if !c.jsonOut {
				fmt.Fprintf(stderr, "safetycheck: %s: %v\n", o.file, o.err)
			}
			code = exitFailed
		}
	}
	if code == exitOK && c.failOnNSFW {
		for _, o := range outcomes {
			if o.result != nil && o.result.NSFW {
				return exitFlagged
			}
		}
	}
	return code
}

// outcome is what happened to one input.
type outcome struct {
	file   string
	result *safety.Result
	err    error
}

// record is the outcome's line of -json output.
func (o outcome) record() cmdutil.Record { return cmdutil.NewRecord(o.file, o.result, o.err) }

// checkAll preprocesses every input (a failure is that input's error alone) and checks the ones that
// preprocessed, batch by batch.
func checkAll(ctx context.Context, checker *safety.Checker, inputs []string, c config, stderr io.Writer) []outcome {
	outcomes := make([]outcome, len(inputs))
	s := checker.Info().ImageSize
	per := 3 * s * s
	bar := newProgress(stderr, len(inputs), c.quiet)
	for start := 0; start < len(inputs); start += c.batch {
		end := min(start+c.batch, len(inputs))
		var pix []float32
		var idx []int
		for i := start; i < end; i++ {
			outcomes[i].file = inputs[i]
			p, err := checker.PreprocessFile(inputs[i])
			if err == nil && c.pixelsDir != "" {
				err = writePixels(filepath.Join(c.pixelsDir, filepath.Base(inputs[i])+".pixel_values.f32"), p)
			}
			if err != nil {
				outcomes[i].err = err
				continue
			}
			pix = append(pix, p...)
			idx = append(idx, i)
		}
		if len(idx) > 0 {
			res, err := checker.CheckPixels(ctx, pix[:len(idx)*per], len(idx))
			for k, i := range idx {
				if err != nil {
					outcomes[i].err = err
				} else {
					outcomes[i].result = &res[k]
				}
			}
		}
		bar.add(end - start)
	}
	bar.finish()
	return outcomes
}

func writePixels(path string, p []float32) error {
	b := make([]byte, 4*len(p))
	for i, v := range p {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return os.WriteFile(path, b, 0o644)
}

var imageExts = []string{".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}

// expandInputs replaces each directory by the image files in it, sorted by name.
func expandInputs(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil || !st.IsDir() {
			out = append(out, a) // a missing file is reported as that input's error
			continue
		}
		entries, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		var files []string
		for _, e := range entries {
			if !e.IsDir() && slices.Contains(imageExts, strings.ToLower(filepath.Ext(e.Name()))) {
				files = append(files, filepath.Join(a, e.Name()))
			}
		}
		sort.Strings(files)
		out = append(out, files...)
	}
	return out, nil
}

func printTable(w io.Writer, outcomes []outcome) {
	width := len("FILE")
	for _, o := range outcomes {
		width = max(width, len(o.file))
	}
	fmt.Fprintf(w, "%-*s  %-8s  %s\n", width, "FILE", "VERDICT", "TOP CONCEPT SCORES (index:score)")
	for _, o := range outcomes {
		switch {
		case o.err != nil:
			fmt.Fprintf(w, "%-*s  %-8s  %v\n", width, o.file, "ERROR", o.err)
		default:
			verdict := "safe"
			if o.result.NSFW {
				verdict = "NSFW"
			}
			extra := ""
			if o.result.SpecialCare {
				extra = fmt.Sprintf("  special care %v", o.result.SpecialConcepts)
			}
			fmt.Fprintf(w, "%-*s  %-8s  %s%s\n", width, o.file, verdict, topScores(o.result.ConceptScores, 3), extra)
		}
	}
}

func topScores(scores []float32, n int) string {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	var parts []string
	for _, i := range idx[:min(n, len(idx))] {
		parts = append(parts, fmt.Sprintf("%d:%+.3f", i, scores[i]))
	}
	return strings.Join(parts, " ")
}
