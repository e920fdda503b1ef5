// Package benchutil holds what the serving benchmarks share (the library's BenchmarkConcurrentCallers
// and safetyd's BenchmarkHTTP): concurrent callers in a loop, their throughput and latency
// percentiles, and the batch window under test.
package benchutil

import (
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Window is the batch window the serving benchmarks use: SAFETY_BENCH_WINDOW (a Go duration) or
// safetyd's default, 5 ms.
func Window(b *testing.B) time.Duration {
	b.Helper()
	if s := os.Getenv("SAFETY_BENCH_WINDOW"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("SAFETY_BENCH_WINDOW: %v", err)
		}
		return d
	}
	return 5 * time.Millisecond
}

// RunCallers runs b.N images through call on callers goroutines, perCall images a call (call(i) is
// the i-th call of its goroutine g, numbered g·1000 + i), and reports images/s over the images it
// ran (b.N rounded up to a whole call) and the p50-ms and p99-ms latency of one call.
func RunCallers(b *testing.B, callers, perCall int, call func(i int) error) {
	b.Helper()
	var claimed atomic.Int64
	lats := make([][]time.Duration, callers)
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	for g := range callers {
		wg.Go(func() {
			for i := 0; claimed.Add(int64(perCall)) <= int64(b.N+perCall-1); i++ {
				start := time.Now()
				if err := call(g*1000 + i); err != nil {
					failed.Store(err)
					return
				}
				lats[g] = append(lats[g], time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lats...)
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(len(all)*perCall)/s, "images/s")
	}
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	q := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}
