package safety

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sdsafety/safety/internal/benchutil"
)

// BenchmarkConcurrentCallers measures dynamic batching: 1, 4, 8 and 16 goroutines each checking one
// image per call in a loop with batching on, against one caller with batch 8 and one caller of single
// images with batching off. The configurations run in short alternating segments
// (benchutil.Alternate; run with -benchtime 1x -v for the table); the metrics are the ratios the
// issue asks for: x-batch8 is the throughput of 8 batched callers over the batch-8 caller's, lone-on/off
// a lone caller's throughput with batching on over off. scripts/bench-serving.sh runs it.
func BenchmarkConcurrentCallers(b *testing.B) {
	bt := benchModel(b)
	dir, full := bt.dir, bt.full
	if full {
		b.Logf("model: %s", dir)
	} else {
		b.Logf("model: %s (the full-size checkpoint is absent: the tiny model)", dir)
	}
	window := benchutil.Window(b)
	var batches, batched atomic.Int64 // model batches and their images
	observe := WithBatchObserver(func(n int) { batches.Add(1); batched.Add(int64(n)) })
	// SAFETY_BENCH_ON_FIRST=1 loads the batching checker first, to tell its effect from the load order's.
	var off, on *Checker
	if os.Getenv("SAFETY_BENCH_ON_FIRST") == "1" {
		on = mustLoad(b, dir, WithDevice(DeviceCPU), WithBatchSize(8), WithBatchWindow(window), observe)
		off = mustLoad(b, dir, WithDevice(DeviceCPU), WithBatchSize(8), observe)
	} else {
		off = mustLoad(b, dir, WithDevice(DeviceCPU), WithBatchSize(8), observe)
		on = mustLoad(b, dir, WithDevice(DeviceCPU), WithBatchSize(8), WithBatchWindow(window), observe)
	}
	s := off.Info().ImageSize
	per := 3 * s * s
	pix := benchPixels(16, s)
	for _, c := range []*Checker{off, on} { // warm-up: first-call allocations of both batch sizes
		for _, n := range []int{1, 8} {
			if _, err := c.CheckPixels(context.Background(), pix[:n*per], n); err != nil {
				b.Fatal(err)
			}
		}
	}
	config := func(name string, c *Checker, callers, perCall int) benchutil.Config {
		return benchutil.Config{Name: name, Callers: callers, PerCall: perCall, Call: func(i int) error {
			p := pix[(i%(17-perCall))*per:]
			_, err := c.CheckPixels(context.Background(), p[:perCall*per], perCall)
			return err
		}, Batches: func() (int64, int64) { return batches.Load(), batched.Load() }}
	}
	configs := []benchutil.Config{
		config("batch8/off/callers=1", off, 1, 8),
		config("single/off/callers=1", off, 1, 1),
		config("single/on/callers=1", on, 1, 1),
		config("single/on/callers=4", on, 4, 1),
		config("single/on/callers=8", on, 8, 1),
		config("single/on/callers=16", on, 16, 1),
	}
	segment := 500 * time.Millisecond
	if full {
		segment = 20 * time.Second
	}
	st := benchutil.Alternate(b, configs, 10, segment)
	b.Logf("batch window %v", window)
	b.ReportMetric(st[4].PerSecond()/st[0].PerSecond(), "x-batch8")
	b.ReportMetric(st[2].PerSecond()/st[1].PerSecond(), "lone-on/off")
	for i, n := range []int{1, 4, 8, 16} {
		b.Logf("%2d callers with batching: %.2fx the batch-8 throughput", n, st[2+i].PerSecond()/st[0].PerSecond())
	}
	b.Logf("lone caller, batching on over off: %.3fx throughput, p50 %.2f vs %.2f ms", st[2].PerSecond()/st[1].PerSecond(),
		st[2].Quantile(0.5), st[1].Quantile(0.5))
}
