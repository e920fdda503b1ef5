package safety

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/sdsafety/safety/internal/benchutil"
)

// BenchmarkConcurrentCallers measures dynamic batching: 1, 4, 8 and 16 goroutines each checking one
// image per call in a loop with batching on, against one caller with batch 8 and one caller of single
// images with batching off. b.N counts images; images/s is the throughput, p50-ms and p99-ms the
// latency of one call, images/batch the mean model batch. Run it with -count to interleave the
// configurations; scripts/bench-serving.sh prints the ratios.
func BenchmarkConcurrentCallers(b *testing.B) {
	dir, full := benchModel(b)
	if !full {
		b.Logf("full-size checkpoint absent: benchmarking the tiny model in %s", dir)
	}
	window := benchutil.Window(b)
	var batches, batched atomic.Int64 // model batches and their images, for images/batch
	observe := WithBatchObserver(func(n int) { batches.Add(1); batched.Add(int64(n)) })
	off := mustLoad(b, dir, WithDevice(DeviceCPU), WithBatchSize(8), observe)
	on := mustLoad(b, dir, WithDevice(DeviceCPU), WithBatchSize(8), WithBatchWindow(window), observe)
	s := off.Info().ImageSize
	pix := benchPixels(16, s)
	for _, c := range []*Checker{off, on} { // warm-up: first-call allocations of both batch sizes
		for _, n := range []int{1, 8} {
			if _, err := c.CheckPixels(context.Background(), pix[:n*3*s*s], n); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		c       *Checker
		callers int
		perCall int
	}{
		{"batch8/off/callers=1", off, 1, 8},
		{"single/off/callers=1", off, 1, 1},
		{"single/on/callers=1", on, 1, 1},
		{"single/on/callers=4", on, 4, 1},
		{"single/on/callers=8", on, 8, 1},
		{"single/on/callers=16", on, 16, 1},
	} {
		b.Run(tc.name, func(b *testing.B) {
			batches.Store(0)
			batched.Store(0)
			benchutil.RunCallers(b, tc.callers, tc.perCall, func(i int) error {
				p := pix[(i%(17-tc.perCall))*3*s*s:]
				_, err := tc.c.CheckPixels(context.Background(), p[:tc.perCall*3*s*s], tc.perCall)
				return err
			})
			if n := batches.Load(); n > 0 {
				b.ReportMetric(float64(batched.Load())/float64(n), "images/batch")
			}
		})
	}
}
