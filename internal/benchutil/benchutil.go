// Package benchutil holds what the serving benchmarks share (the library's BenchmarkConcurrentCallers
// and safetyd's BenchmarkHTTP): configurations of concurrent callers run in short alternating
// segments, so that a shared machine's changing load falls on all of them alike, and their
// throughput and latency percentiles.
package benchutil

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Window is the batch window the serving benchmarks use: SAFETY_BENCH_WINDOW (a Go duration) or
// safetyd's default, 5 ms.
func Window(b *testing.B) time.Duration {
	return envDuration(b, "SAFETY_BENCH_WINDOW", 5*time.Millisecond)
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive Go duration", name, s)
	}
	return d
}

// Config is one way of calling: Callers goroutines, each making calls of PerCall images in a loop.
// Call(i) makes the i-th call of a goroutine.
type Config struct {
	Name             string
	Callers, PerCall int
	Call             func(i int) error
	// Batches, when not nil, returns the model batches and images run so far (cumulative): the
	// table then shows the mean model batch of each configuration.
	Batches func() (batches, images int64)
}

// Stats are the totals of a configuration over its segments.
type Stats struct {
	Images  int
	Elapsed time.Duration
	Lats    []time.Duration // sorted by Alternate
	// Batches and Batched count the model batches and their images (Config.Batches).
	Batches, Batched int64
}

// PerSecond is the throughput in images per second.
func (s Stats) PerSecond() float64 { return float64(s.Images) / s.Elapsed.Seconds() }

// Quantile is the q-th quantile of the call latencies in milliseconds.
func (s Stats) Quantile(q float64) float64 {
	if len(s.Lats) == 0 {
		return 0
	}
	return float64(s.Lats[min(len(s.Lats)-1, int(q*float64(len(s.Lats))))].Microseconds()) / 1000
}

// Alternate runs every configuration for one segment per round, SAFETY_BENCH_ROUNDS rounds (default
// rounds) of SAFETY_BENCH_SEGMENT each (default segment), in order on odd rounds and in reverse on
// even ones (ABC CBA ...), and logs a table of the results. SAFETY_BENCH_CONFIGS, a comma-separated
// list of names, runs only those (the others have zero stats). b.N is not used: run it with
// -benchtime 1x.
func Alternate(b *testing.B, configs []Config, rounds int, segment time.Duration) []Stats {
	b.Helper()
	if s := os.Getenv("SAFETY_BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("SAFETY_BENCH_ROUNDS=%q: want a positive number", s)
		}
		rounds = n
	}
	segment = envDuration(b, "SAFETY_BENCH_SEGMENT", segment)
	skip := make([]bool, len(configs)) // SAFETY_BENCH_CONFIGS: a comma-separated subset of the names
	if only := os.Getenv("SAFETY_BENCH_CONFIGS"); only != "" {
		for i, c := range configs {
			skip[i] = !slices.Contains(strings.Split(only, ","), c.Name)
		}
	}
	stats := make([]Stats, len(configs))
	b.ResetTimer()
	for r := range rounds {
		order := make([]int, len(configs))
		for i := range order {
			order[i] = i
		}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, i := range order {
			if skip[i] {
				continue
			}
			var b0, i0 int64
			if configs[i].Batches != nil {
				b0, i0 = configs[i].Batches()
			}
			images, elapsed, lats, err := runFor(segment, configs[i])
			if err != nil {
				b.Fatalf("%s: %v", configs[i].Name, err)
			}
			stats[i].Images += images
			stats[i].Elapsed += elapsed
			stats[i].Lats = append(stats[i].Lats, lats...)
			if configs[i].Batches != nil {
				b1, i1 := configs[i].Batches()
				stats[i].Batches += b1 - b0
				stats[i].Batched += i1 - i0
			}
		}
	}
	b.StopTimer()
	var t strings.Builder
	fmt.Fprintf(&t, "%d rounds of %v per configuration, alternating\n", rounds, segment)
	fmt.Fprintf(&t, "%-26s %10s %9s %9s %8s %10s\n", "configuration", "images/s", "p50 ms", "p99 ms", "images", "img/batch")
	for i, c := range configs {
		s := &stats[i]
		slices.Sort(s.Lats)
		perBatch := "-"
		if s.Batches > 0 {
			perBatch = fmt.Sprintf("%.2f", float64(s.Batched)/float64(s.Batches))
		}
		fmt.Fprintf(&t, "%-26s %10.3f %9.1f %9.1f %8d %10s\n", c.Name, s.PerSecond(), s.Quantile(0.5), s.Quantile(0.99),
			s.Images, perBatch)
	}
	b.Log("\n" + t.String())
	return stats
}

// runFor runs c until d has passed (calls in flight then finish) and returns the images done, the
// time taken and every call's latency.
func runFor(d time.Duration, c Config) (images int, elapsed time.Duration, lats []time.Duration, err error) {
	var failed atomic.Value
	per := make([][]time.Duration, c.Callers)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for g := range c.Callers {
		wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				t := time.Now()
				if err := c.Call(g*1_000_000 + i); err != nil {
					failed.Store(err)
					return
				}
				per[g] = append(per[g], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed = time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		return 0, 0, nil, err
	}
	lats = slices.Concat(per...)
	return len(lats) * c.PerCall, elapsed, lats, nil
}
