// Command safetycheck checks images with the Stable Diffusion safety checker.
//
//	safetycheck [flags] FILE|DIR...
//
// A directory argument means every image file in it, by extension (sorted by name); what else it holds,
// subdirectories included, is listed on stderr as skipped. With -json it prints one JSON
// object per input, in input order; for an input that could not be checked the object holds only
// "file" and "error". With -all-frames every frame of an animated GIF is checked and a checked input's
// object holds "nsfw" and "special_care" (true when true for some frame), "flagged_frames" and
// "frames" (per-frame verdicts and scores). Exit status: 0 when every input was checked (whatever the
// verdicts), 1 when some input could not be checked, 2 for usage errors, 3 with -fail-on-nsfw when an
// image was flagged.
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
	"path/filepath"
	"slices"
	"sort"
	"strconv"
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
	allFrames                  bool
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
	fs.StringVar(&c.textModel, "text-model", "", "CLIP checkpoint for -concept: a directory (openai/clip-vit-large-patch14 layout) or a hub repository id")
	fs.Var(&c.concepts, "concept", "custom concept NAME=THRESHOLD:TEXT, scored with the CLIP text tower of -text-model (repeatable)")
	fs.BoolVar(&c.allFrames, "all-frames", false, "check every frame of animated GIFs; a row is nsfw when any frame is (APNG: an error)")
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
	inputs, err := expandInputs(fs.Args(), stderr)
	if err != nil {
		fmt.Fprintf(stderr, "safetycheck: %v\n", err)
		return exitUsage
	}
	if c.allFrames && c.pixelsDir != "" {
		fmt.Fprintln(stderr, "safetycheck: -pixels writes one image per input: not with -all-frames")
		return exitUsage
	}
	if c.pixelsDir != "" {
		if err := pixelNameClash(inputs); err != nil {
			fmt.Fprintf(stderr, "safetycheck: -pixels: %v\n", err)
			return exitUsage
		}
		if err := os.MkdirAll(c.pixelsDir, 0o755); err != nil {
			fmt.Fprintf(stderr, "safetycheck: %v\n", err)
			return exitUsage
		}
	}

	ctx, stop := interruptContext(context.Background(), stderr)
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

	check := checkAll
	if c.allFrames {
		check = checkAllFrames
	}
	outcomes := check(ctx, checker, inputs, c, stderr)
	code := exitOK
	if c.jsonOut {
		enc := json.NewEncoder(stdout)
		for _, o := range outcomes {
			var rec any = o.record()
			if c.allFrames {
				rec = o.framesRecord()
			}
			if err := enc.Encode(rec); err != nil {
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
	frames []safety.Result // -all-frames: every frame's result (result is one of them)
	err    error
}

// record is the outcome's line of -json output.
func (o outcome) record() cmdutil.Record { return cmdutil.NewRecord(o.file, o.result, o.err) }

// checkAll preprocesses every input (a failure is that input's error alone) and checks the ones that
// preprocessed, batch by batch. Once ctx ends (Ctrl-C), no further file is opened: every input not
// yet checked gets the interruption as its error.
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
			if ctx.Err() != nil {
				outcomes[i].err = interruptError(ctx)
				continue
			}
			p, err := checker.PreprocessFile(inputs[i])
			if err == nil && c.pixelsDir != "" {
				err = writePixels(filepath.Join(c.pixelsDir, pixelsName(inputs[i])), p)
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
			if err != nil && ctx.Err() != nil {
				err = interruptError(ctx)
			}
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

var imageExts = []string{".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".tif", ".tiff", ".webp"}

// expandInputs replaces each directory by the image files in it (by extension), sorted by name; it
// does not descend into subdirectories. What a directory holds and is not checked (subdirectories,
// files with other extensions) is listed on stderr, so that nothing is skipped silently.
func expandInputs(args []string, stderr io.Writer) ([]string, error) {
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
		var files, skipped []string
		for _, e := range entries {
			switch {
			case e.IsDir():
				skipped = append(skipped, e.Name()+"/")
			case slices.Contains(imageExts, strings.ToLower(filepath.Ext(e.Name()))):
				files = append(files, filepath.Join(a, e.Name()))
			default:
				skipped = append(skipped, e.Name())
			}
		}
		if len(skipped) > 0 {
			sort.Strings(skipped)
			const show = 10
			list := strings.Join(quoteAll(skipped[:min(show, len(skipped))]), ", ")
			if len(skipped) > show {
				list += fmt.Sprintf(" and %d more", len(skipped)-show)
			}
			fmt.Fprintf(stderr, "safetycheck: %s: skipped %d entries that are subdirectories or have no image extension (%s): %s\n",
				a, len(skipped), strings.Join(imageExts, " "), list)
		}
		sort.Strings(files)
		out = append(out, files...)
	}
	return out, nil
}

// quoteAll quotes names with strconv.Quote (which shows bytes that are not UTF-8 as \x escapes).
func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strconv.Quote(n)
	}
	return out
}

// pixelsName is the file -pixels writes an input's pixels to, inside the -pixels directory.
func pixelsName(input string) string { return filepath.Base(input) + ".pixel_values.f32" }

// pixelNameClash reports two inputs whose -pixels files would have the same name (the later would
// overwrite the earlier).
func pixelNameClash(inputs []string) error {
	seen := map[string]string{}
	for _, in := range inputs {
		name := pixelsName(in)
		if first, ok := seen[name]; ok && first != in {
			return fmt.Errorf("inputs %s and %s would both write %s", strconv.Quote(first), strconv.Quote(in), name)
		}
		seen[name] = in
	}
	return nil
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
			fmt.Fprintf(w, "%-*s  %-8s  %s%s%s\n", width, o.file, verdict, topScores(o.result.ConceptScores, 3), extra, framesNote(o))
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
