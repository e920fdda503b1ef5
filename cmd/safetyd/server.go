package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sdsafety/safety"
	"github.com/sdsafety/safety/internal/cmdutil"
)

// server is the HTTP side of safetyd: the handlers, the admission queue and the metrics.
type server struct {
	cfg      config
	token    string // bearer token POST /v1/check requires; "" for none
	log      *log.Logger
	metrics  *metrics
	admitted chan struct{} // one token per admitted request (capacity -queue)

	mu       sync.RWMutex
	checker  *safety.Checker // nil until loaded
	draining atomic.Bool
}

func newServer(c config, token string, logger *log.Logger) *server {
	s := &server{cfg: c, token: token, log: logger, admitted: make(chan struct{}, c.queue)}
	s.metrics = newMetrics(c.queue)
	return s
}

func (s *server) setChecker(c *safety.Checker) {
	s.mu.Lock()
	s.checker = c
	s.mu.Unlock()
	s.metrics.ready.Set(1)
}

func (s *server) getChecker() *safety.Checker {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.checker
}

// setDraining makes /readyz answer 503, so that a load balancer stops sending requests.
func (s *server) setDraining() {
	s.draining.Store(true)
	s.metrics.ready.Set(0)
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/check", s.instrument(s.check))
	mux.HandleFunc("/healthz", s.probe(func() bool { return true }))
	mux.HandleFunc("/readyz", s.probe(func() bool { return s.getChecker() != nil && !s.draining.Load() }))
	mux.Handle("/metrics", s.metrics.handler())
	return mux
}

// probe answers GET and HEAD with 200 "ok" while ok() holds, else 503.
func (s *server) probe(ok func() bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !ok() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	}
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// instrument counts requests by status and observes their latency.
func (s *server) instrument(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		s.metrics.observeRequest(sw.status, time.Since(start))
	}
}

// httpError is an error with the HTTP status it answers.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// writeJSON answers status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v) // a failed write means the client has gone
}

// fail answers err as {"error": ...} with its status (500 for an error without one); 429 and 503
// carry Retry-After.
func (s *server) fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var he *httpError
	if errors.As(err, &he) {
		status = he.status
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.retryAfter/time.Second)))
	}
	if status >= 500 {
		s.log.Printf("%d: %v", status, err)
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// check is POST /v1/check.
func (s *server) check(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.fail(w, errorf(http.StatusMethodNotAllowed, "method %s not allowed: POST an image", r.Method))
		return
	}
	if s.token != "" && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="safetyd"`)
		s.fail(w, errorf(http.StatusUnauthorized, "missing or wrong bearer token"))
		return
	}
	checker := s.getChecker()
	if checker == nil || s.draining.Load() {
		s.fail(w, errorf(http.StatusServiceUnavailable, "not ready: the model is loading or the server is stopping"))
		return
	}
	select {
	case s.admitted <- struct{}{}:
	default:
		s.metrics.rejected.Inc()
		s.fail(w, errorf(http.StatusTooManyRequests, "too many requests in flight (%d); retry later", s.cfg.queue))
		return
	}
	s.metrics.queue.Inc()
	defer func() {
		<-s.admitted
		s.metrics.queue.Dec()
	}()
	// -timeout bounds the whole request, the upload included: a slow client cannot hold its place
	// in the queue for longer.
	deadline := time.Now().Add(s.cfg.timeout)
	http.NewResponseController(w).SetReadDeadline(deadline) // not every connection supports it
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()

	body := http.MaxBytesReader(w, r.Body, s.cfg.maxBody)
	inputs, multi, err := s.readInputs(r, body)
	if err != nil {
		s.fail(w, err)
		return
	}
	records, err := s.checkInputs(ctx, checker, inputs)
	if err != nil {
		s.fail(w, err)
		return
	}
	if multi {
		writeJSON(w, http.StatusOK, records)
	} else {
		writeJSON(w, http.StatusOK, records[0])
	}
}

func (s *server) authorized(r *http.Request) bool {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), []byte(s.token)) == 1
}

// input is one image of a request: its name and encoded bytes.
type input struct {
	name string
	data []byte
}

// readInputs reads the request's images: every file part of a multipart/form-data body (multi is
// then true), or the whole body as one image named by the "file" query parameter.
func (s *server) readInputs(r *http.Request, body io.Reader) (inputs []input, multi bool, err error) {
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType != "multipart/form-data" {
		data, err := io.ReadAll(body)
		if err != nil {
			return nil, false, bodyError(err)
		}
		if len(data) == 0 {
			return nil, false, errorf(http.StatusBadRequest, "empty body: POST an image")
		}
		return []input{{name: r.URL.Query().Get("file"), data: data}}, false, nil
	}
	if params["boundary"] == "" {
		return nil, true, errorf(http.StatusBadRequest, "multipart body without a boundary")
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, true, bodyError(err)
		}
		if part.FileName() == "" {
			part.Close() // a form field that is not a file
			continue
		}
		if len(inputs) == s.cfg.maxImages {
			return nil, true, errorf(http.StatusRequestEntityTooLarge, "more than %d files in one request", s.cfg.maxImages)
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return nil, true, bodyError(err)
		}
		inputs = append(inputs, input{name: part.FileName(), data: data})
	}
	if len(inputs) == 0 {
		return nil, true, errorf(http.StatusBadRequest, "multipart body without files")
	}
	return inputs, true, nil
}

// bodyError maps an error reading the body: 413 past -max-body, 408 past -timeout, else 400.
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return errorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", tooLarge.Limit)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errorf(http.StatusRequestTimeout, "the body did not arrive within the request's time limit")
	}
	return errorf(http.StatusBadRequest, "reading the body: %v", err)
}

// checkInputs decodes and preprocesses every input (any failure fails the request: no verdict is
// given for a request with an input that cannot be checked) and checks them in one call.
func (s *server) checkInputs(ctx context.Context, checker *safety.Checker, inputs []input) ([]cmdutil.Record, error) {
	var pixels []float32
	for i, in := range inputs {
		p, err := checker.PreprocessEncoded(in.data)
		if err != nil {
			return nil, inputError(i, in.name, err)
		}
		pixels = append(pixels, p...)
	}
	results, err := checker.CheckPixels(ctx, pixels, len(inputs))
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return nil, errorf(http.StatusServiceUnavailable, "not checked within %v", s.cfg.timeout)
	case errors.Is(err, context.Canceled):
		return nil, errorf(http.StatusServiceUnavailable, "request cancelled")
	case errors.Is(err, safety.ErrNonFinite):
		return nil, errorf(http.StatusUnprocessableEntity, "%v", err)
	case errors.Is(err, safety.ErrClosed):
		return nil, errorf(http.StatusServiceUnavailable, "the server is stopping")
	case errors.Is(err, safety.ErrInvalidInput):
		return nil, errorf(http.StatusBadRequest, "%v", err)
	case err != nil:
		return nil, fmt.Errorf("check: %w", err)
	}
	records := make([]cmdutil.Record, len(inputs))
	for i := range inputs {
		records[i] = cmdutil.NewRecord(inputs[i].name, &results[i], nil)
	}
	s.metrics.observeResults(results)
	return records, nil
}

// inputError maps a decoding or preprocessing error of input i: 413 for an image over -max-pixels,
// 415 for a format the checker does not read, else 400.
func inputError(i int, name string, err error) error {
	what := fmt.Sprintf("image %d", i)
	if name != "" {
		what = fmt.Sprintf("image %d (%s)", i, name)
	}
	switch {
	case errors.Is(err, safety.ErrImageTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, "%s: %v", what, err)
	case errors.Is(err, safety.ErrUnsupportedFormat):
		return errorf(http.StatusUnsupportedMediaType, "%s: %v", what, err)
	default:
		return errorf(http.StatusBadRequest, "%s: %v", what, err)
	}
}
