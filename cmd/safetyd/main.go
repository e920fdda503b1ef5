// Command safetyd serves the Stable Diffusion safety checker over HTTP.
//
//	safetyd -model NAME|DIR [flags]
//
// POST /v1/check with an image as the body answers one JSON object with the fields of safetycheck's
// -json output; a multipart/form-data body with several files answers a JSON array in their order.
// An input that cannot be checked gets a 4xx status and {"error": "..."}, never a verdict.
// GET /healthz answers 200 while the process runs, GET /readyz 200 once the model is loaded (and
// 503 while it loads or drains), GET /metrics the Prometheus metrics.
//
// Concurrent requests share model batches (-batch-window). At most -queue requests are admitted at
// once; more get 429 with Retry-After. SIGTERM or SIGINT stops accepting requests, finishes the
// ones in flight (at most -drain) and exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sdsafety/safety"
	"github.com/sdsafety/safety/internal/cmdutil"
)

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// config is the command line.
type config struct {
	model                      cmdutil.Model
	device, dtype              string
	batch, threads             int
	batchWindow                time.Duration
	adjustment                 float64
	orientation, mapped        bool
	addr                       string
	maxBody, maxPixels         int64
	maxImages, queue           int
	timeout, drain, retryAfter time.Duration
	tokenFile                  string
}

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	os.Exit(run(os.Args[1:], os.Stderr, sigs, nil))
}

// run parses args, starts serving, loads the model and serves until a signal arrives on sigs (or
// the model fails to load). onListen, when not nil, is called with the address once it listens.
func run(args []string, stderr io.Writer, sigs <-chan os.Signal, onListen func(addr string)) int {
	logger := log.New(stderr, "safetyd: ", log.LstdFlags)
	c, code := parseFlags(args, stderr)
	if code >= 0 {
		return code
	}
	opts := []safety.Option{
		safety.WithDevice(safety.Device(c.device)),
		safety.WithDType(safety.DType(c.dtype)),
		safety.WithBatchSize(c.batch),
		safety.WithBatchWindow(c.batchWindow),
		safety.WithAdjustment(float32(c.adjustment)),
		safety.WithMaxPixels(c.maxPixels),
		safety.WithEXIFOrientation(c.orientation),
		safety.WithMappedWeights(c.mapped),
	}
	if c.threads > 0 {
		opts = append(opts, safety.WithThreads(c.threads))
	}
	var token string
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			logger.Printf("token file: %v", err)
			return exitUsage
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			logger.Printf("token file %s is empty", c.tokenFile)
			return exitUsage
		}
	}

	s := newServer(c, token, logger)
	opts = append(opts, safety.WithBatchObserver(s.metrics.observeBatch))
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		logger.Printf("listen: %v", err)
		return exitError
	}
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: logger}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Printf("listening on http://%s", ln.Addr())
	if onListen != nil {
		onListen(ln.Addr().String())
	}

	// The model loads while /healthz already answers; /readyz turns 200 once it is loaded.
	loadCtx, cancelLoad := context.WithCancel(context.Background())
	defer cancelLoad()
	loaded := make(chan error, 1)
	go func() {
		checker, err := cmdutil.Load(loadCtx, c.model, stderr, opts...)
		if err == nil {
			s.setChecker(checker)
			info := checker.Info()
			logger.Printf("model %s loaded: %s %s, batch %d, batch window %v, weights: %d bytes mapped, %d bytes copied",
				c.model.Name, info.Device, info.DType, c.batch, c.batchWindow, info.MappedBytes, info.CopiedBytes)
		}
		loaded <- err
	}()

	code = exitOK
	loadDone := false
	select {
	case sig := <-sigs:
		logger.Printf("%v: draining (at most %v)", sig, c.drain)
	case err := <-loaded:
		loadDone = true
		if err != nil {
			logger.Printf("load %s: %v", c.model.Name, err)
			code = exitError
			if errors.Is(err, safety.ErrInvalidOption) {
				code = exitUsage
			}
			break
		}
		select {
		case sig := <-sigs:
			logger.Printf("%v: draining (at most %v)", sig, c.drain)
		case err := <-served:
			logger.Printf("serve: %v", err)
			code = exitError
		}
	case err := <-served:
		logger.Printf("serve: %v", err)
		code = exitError
	}
	cancelLoad()
	s.setDraining()
	ctx, cancel := context.WithTimeout(context.Background(), c.drain)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Printf("shutdown: %v (requests still in flight were cut)", err)
		srv.Close()
		if code == exitOK {
			code = exitError
		}
	}
	if !loadDone {
		<-loaded // a load in progress stops at its next cancellation point or completes
	}
	if checker := s.getChecker(); checker != nil {
		checker.Close()
	}
	logger.Printf("stopped")
	return code
}

// parseFlags returns the configuration, and an exit code >= 0 when the command should stop.
func parseFlags(args []string, stderr io.Writer) (config, int) {
	fs := flag.NewFlagSet("safetyd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.model.Name, "model", safety.DefaultModel, "model: a local directory in Hugging Face layout, or a hub repo id")
	fs.StringVar(&c.model.Subfolder, "subfolder", "", "subfolder of the model repo or directory holding the checker (e.g. safety_checker)")
	fs.StringVar(&c.model.Revision, "revision", "main", "hub revision (branch, tag or commit)")
	fs.StringVar(&c.device, "device", "auto", "auto, cpu or cuda")
	fs.StringVar(&c.dtype, "dtype", "float32", "float32, float16 or bfloat16")
	fs.IntVar(&c.batch, "batch", 8, "images per model call")
	fs.DurationVar(&c.batchWindow, "batch-window", 5*time.Millisecond,
		"how long a request with fewer images than -batch waits for others to share its model batch (0: off)")
	fs.IntVar(&c.threads, "threads", 0, "libtorch threads (0: libtorch's default)")
	fs.Float64Var(&c.adjustment, "adjustment", 0, "added to every concept score (positive: stricter)")
	fs.BoolVar(&c.orientation, "exif-orientation", false, "apply EXIF orientation (the reference does not)")
	fs.BoolVar(&c.mapped, "mapped", true, "use the model file's weights in place (memory-mapped); false copies them at load, "+
		"for model directories that are rewritten in place while the server runs")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "listen address")
	fs.Int64Var(&c.maxBody, "max-body", 32<<20, "largest request body in bytes (larger: 413)")
	fs.Int64Var(&c.maxPixels, "max-pixels", 40_000_000, "largest image in pixels, refused before decoding (413)")
	fs.IntVar(&c.maxImages, "max-images", 64, "most files in one multipart request (more: 413)")
	fs.IntVar(&c.queue, "queue", 64, "most requests admitted at once, reading, waiting or being checked (more: 429)")
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "per-request time limit (past it: 503)")
	fs.DurationVar(&c.drain, "drain", 30*time.Second, "on SIGTERM, how long in-flight requests may take to finish")
	fs.DurationVar(&c.retryAfter, "retry-after", time.Second, "Retry-After sent with 429 and 503")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding a bearer token that POST /v1/check requires")
	fs.BoolVar(&c.model.Quiet, "q", false, "no download progress bar")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: safetyd [flags]\n\nServes the Stable Diffusion safety checker over HTTP.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, exitOK
		}
		return c, exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "safetyd: unexpected arguments %q\n", fs.Args())
		return c, exitUsage
	}
	for _, bad := range []struct {
		ok   bool
		what string
	}{
		{c.batch > 0, "-batch must be > 0"},
		{c.maxBody > 0, "-max-body must be > 0"},
		{c.maxPixels > 0, "-max-pixels must be > 0"},
		{c.maxImages > 0, "-max-images must be > 0"},
		{c.queue > 0, "-queue must be > 0"},
		{c.timeout > 0, "-timeout must be > 0"},
		{c.drain > 0, "-drain must be > 0"},
		{c.retryAfter >= time.Second, "-retry-after must be at least 1s"},
	} {
		if !bad.ok {
			fmt.Fprintf(stderr, "safetyd: %s\n", bad.what)
			return c, exitUsage
		}
	}
	return c, -1
}
