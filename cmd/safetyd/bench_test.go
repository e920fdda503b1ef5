package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdsafety/safety"
	"github.com/sdsafety/safety/internal/benchutil"
)

// benchModelDir is the model the HTTP benchmark serves: the full-size ViT-L/14 checkpoint when
// `make fullsize` has made it (SAFETY_FULLSIZE or bench-cache/fullsize), else the tiny parity model.
func benchModelDir(b *testing.B) (string, bool) {
	b.Helper()
	full := os.Getenv("SAFETY_FULLSIZE")
	if full == "" {
		full = filepath.Join("..", "..", "bench-cache", "fullsize")
	}
	if _, err := os.Stat(filepath.Join(full, ".complete")); err == nil {
		return filepath.Join(full, "model"), true
	}
	dir := filepath.Join(parityDir, "model")
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		b.Skipf("neither the full-size checkpoint (%s) nor the parity model (%s) is present", full, dir)
	}
	return dir, false
}

// BenchmarkHTTP posts one 512×512 PNG per request to safetyd on loopback from 1, 8 and 32 concurrent
// clients, and does the same work in-process (PreprocessEncoded + CheckPixels on a checker with the
// same options) from as many goroutines, in short alternating segments (benchutil.Alternate; run with
// -benchtime 1x -v for the table). The metrics are HTTP's throughput over in-process at each
// concurrency. scripts/bench-serving.sh runs it.
func BenchmarkHTTP(b *testing.B) {
	dir, full := benchModelDir(b)
	if full {
		b.Logf("model: %s", dir)
	} else {
		b.Logf("model: %s (the full-size checkpoint is absent: the tiny model)", dir)
	}
	window := benchutil.Window(b)
	img, err := os.ReadFile(filepath.Join(parityDir, "images", "astronaut_512.png"))
	if err != nil {
		b.Skipf("bench image: %v", err)
	}
	s := startBenchServer(b, "-model", dir, "-device", "cpu", "-batch", "8", "-batch-window", window.String(), "-queue", "256", "-timeout", "10m")
	var batches, batched atomic.Int64
	checker, err := safety.Load(dir, safety.WithDevice(safety.DeviceCPU), safety.WithBatchSize(8), safety.WithBatchWindow(window),
		safety.WithBatchObserver(func(n int) { batches.Add(1); batched.Add(int64(n)) }))
	if err != nil {
		b.Fatal(err)
	}
	defer checker.Close()
	hc := &http.Client{Timeout: 10 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	post := func(int) error {
		resp, err := hc.Post(s+"/v1/check", "image/png", bytes.NewReader(img))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	inproc := func(int) error {
		pix, err := checker.PreprocessEncoded(img)
		if err != nil {
			return err
		}
		_, err = checker.CheckPixels(context.Background(), pix, 1)
		return err
	}
	for _, f := range []func(int) error{post, inproc} { // warm-up
		if err := f(0); err != nil {
			b.Fatal(err)
		}
	}
	inprocBatches := func() (int64, int64) { return batches.Load(), batched.Load() }
	serverBatches := func() (int64, int64) { // from the server's safetyd_batch_size histogram
		resp, err := hc.Get(s + "/metrics")
		if err != nil {
			return 0, 0
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var count, sum float64
		for line := range strings.Lines(string(body)) {
			fmt.Sscanf(line, "safetyd_batch_size_count %g", &count)
			fmt.Sscanf(line, "safetyd_batch_size_sum %g", &sum)
		}
		return int64(count), int64(sum)
	}
	var configs []benchutil.Config
	for _, conc := range []int{1, 8, 32} {
		configs = append(configs,
			benchutil.Config{Name: fmt.Sprintf("inproc/conc=%d", conc), Callers: conc, PerCall: 1, Call: inproc, Batches: inprocBatches},
			benchutil.Config{Name: fmt.Sprintf("http/conc=%d", conc), Callers: conc, PerCall: 1, Call: post, Batches: serverBatches})
	}
	segment := time.Second
	if full {
		segment = 20 * time.Second
	}
	st := benchutil.Alternate(b, configs, 6, segment)
	for i, conc := range []int{1, 8, 32} {
		r := st[2*i+1].PerSecond() / st[2*i].PerSecond()
		b.ReportMetric(r, fmt.Sprintf("http/inproc@%d", conc))
		b.Logf("concurrency %2d: HTTP %.1f images/s, %.2fx in-process (overhead %+.1f%%); p50 %.1f vs %.1f ms",
			conc, st[2*i+1].PerSecond(), r, 100*(1-r), st[2*i+1].Quantile(0.5), st[2*i].Quantile(0.5))
	}
}

// startBenchServer runs safetyd in-process until the benchmark ends and returns its URL once ready.
func startBenchServer(b *testing.B, args ...string) string {
	b.Helper()
	sigs := make(chan os.Signal, 1)
	done := make(chan int, 1)
	listening := make(chan string, 1)
	go func() {
		done <- run(append([]string{"-addr", "127.0.0.1:0", "-q"}, args...), io.Discard, sigs,
			func(addr string) { listening <- "http://" + addr })
	}()
	var url string
	select {
	case url = <-listening:
	case code := <-done:
		b.Fatalf("safetyd exited with %d", code)
	}
	b.Cleanup(func() {
		sigs <- os.Interrupt
		<-done
	})
	for deadline := time.Now().Add(time.Minute); ; {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("safetyd not ready within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
