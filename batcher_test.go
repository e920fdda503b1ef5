package safety

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// Tests of dynamic batching (batcher.go) on the tiny golden model.

const batchModelDir = goldenDir + "/models/tiny_quickgelu"

// goldenPixels returns the n first preprocessed golden images, each [3, 224, 224].
func goldenPixels(t *testing.T, n int) [][]float32 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(goldenDir, "pixels", "*.pixel_values.f32"))
	if err != nil || len(files) < n {
		t.Skipf("need %d golden pixel files, have %d (%v)", n, len(files), err)
	}
	var out [][]float32
	for _, f := range files[:n] {
		out = append(out, readF32(t, f))
	}
	return out
}

// sizeLog records the model batch sizes a checker runs (WithBatchObserver).
type sizeLog struct {
	mu    sync.Mutex
	sizes []int
}

func (l *sizeLog) observe(n int) {
	l.mu.Lock()
	l.sizes = append(l.sizes, n)
	l.mu.Unlock()
}

func (l *sizeLog) get() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sizes)
}

// loadBatching loads the tiny model with dynamic batching and a batch-size log.
func loadBatching(t *testing.T, window time.Duration) (*Checker, *sizeLog) {
	t.Helper()
	needTracked(t, filepath.Join(batchModelDir, "config.json"))
	log := &sizeLog{}
	c := mustLoad(t, batchModelDir, WithDevice(DeviceCPU), WithBatchSize(8), WithBatchWindow(window),
		WithBatchObserver(log.observe))
	return c, log
}

// holdBatch makes the dispatcher expect one more call than will come, so that a batch stays open
// for the whole window (or until it is full): the calls a test starts together then share one batch
// whatever the scheduling. The returned function withdraws the phantom call.
func holdBatch(c *Checker) func() {
	c.batcher.pending.Add(1)
	var once sync.Once
	return func() { once.Do(func() { c.batcher.pending.Add(-1) }) }
}

// unbatchedResults checks each image alone on a checker without batching: the reference answers.
func unbatchedResults(t *testing.T, imgs [][]float32) []Result {
	t.Helper()
	c := mustLoad(t, batchModelDir, WithDevice(DeviceCPU))
	var out []Result
	for i, p := range imgs {
		r, err := c.CheckPixels(context.Background(), p, 1)
		if err != nil {
			t.Fatalf("image %d alone: %v", i, err)
		}
		out = append(out, r[0])
	}
	return out
}

// sameResult reports whether got is want's image: embeddings within tol and the same verdict.
func sameResult(got, want Result, tol float64) bool {
	return got.NSFW == want.NSFW && maxAbs(got.ImageEmbeds, f64(want.ImageEmbeds)) <= tol &&
		maxAbs(got.CosDist, f64(want.CosDist)) <= tol
}

// concat joins images into one [n, 3, S, S] input.
func concat(imgs [][]float32) []float32 {
	var out []float32
	for _, p := range imgs {
		out = append(out, p...)
	}
	return out
}

type callOutcome struct {
	res []Result
	err error
	dur time.Duration
}

// runCalls starts one goroutine per call (each with its own images and context) and waits for all,
// at most 30 s.
func runCalls(t *testing.T, c *Checker, ctxs []context.Context, calls [][][]float32) []callOutcome {
	t.Helper()
	out := make([]callOutcome, len(calls))
	var wg sync.WaitGroup
	for i, imgs := range calls {
		wg.Go(func() {
			start := time.Now()
			out[i].res, out[i].err = c.CheckPixels(ctxs[i], concat(imgs), len(imgs))
			out[i].dur = time.Since(start)
		})
	}
	waitAll(t, &wg, 30*time.Second, "batched calls")
	return out
}

// waitAll waits for wg at most d.
func waitAll(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not end within %v", what, d)
	}
}

func background(n int) []context.Context {
	ctxs := make([]context.Context, n)
	for i := range ctxs {
		ctxs[i] = context.Background()
	}
	return ctxs
}

func TestBatchWindowOption(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want error
	}{
		{0, nil}, {time.Millisecond, nil}, {time.Minute, nil},
		{-time.Millisecond, ErrInvalidOption}, {time.Minute + 1, ErrInvalidOption},
	} {
		var o options
		if err := WithBatchWindow(tc.d)(&o); !errors.Is(err, tc.want) {
			t.Errorf("WithBatchWindow(%v): %v, want %v", tc.d, err, tc.want)
		}
	}
}

// TestBatchedCallersGetTheirOwnResults runs concurrent calls of one or several images and checks
// that they shared model batches and that each caller got exactly its own images' results, in order.
func TestBatchedCallersGetTheirOwnResults(t *testing.T) {
	imgs := goldenPixels(t, 10)
	want := unbatchedResults(t, imgs)
	for _, tc := range []struct {
		name       string
		sizes      []int // images per call
		maxBatches int   // model batches at most
	}{
		{"eight single images", []int{1, 1, 1, 1, 1, 1, 1, 1}, 1},
		{"mixed sizes", []int{3, 2, 1, 1, 3}, 3},
		{"one call", []int{2}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, log := loadBatching(t, 500*time.Millisecond)
			var calls [][][]float32
			var index [][]int // index[k]: the images of call k
			next := 0
			for _, n := range tc.sizes {
				var idx []int
				for range n {
					idx = append(idx, next)
					next++
				}
				index = append(index, idx)
				var call [][]float32
				for _, i := range idx {
					call = append(call, imgs[i])
				}
				calls = append(calls, call)
			}
			release := holdBatch(c)
			out := runCalls(t, c, background(len(calls)), calls)
			release()
			for k, o := range out {
				if o.err != nil {
					t.Fatalf("call %d: %v", k, o.err)
				}
				if len(o.res) != len(index[k]) {
					t.Fatalf("call %d: %d results for %d images", k, len(o.res), len(index[k]))
				}
				for j, i := range index[k] {
					if !sameResult(o.res[j], want[i], 1e-5) {
						t.Errorf("call %d result %d is not image %d's", k, j, i)
					}
				}
			}
			sizes := log.get()
			sum := 0
			for _, s := range sizes {
				sum += s
				if s > 8 {
					t.Errorf("model batch of %d images, batch size is 8", s)
				}
			}
			if sum != next || len(sizes) > tc.maxBatches {
				t.Errorf("model batches %v: want %d images in at most %d batches", sizes, next, tc.maxBatches)
			}
		})
	}
}

// TestBatchNonFiniteReachesOnlyItsCaller puts an image with NaN pixels in a batch with clean ones:
// its caller gets ErrNonFinite, the others their results, computed again without it.
func TestBatchNonFiniteReachesOnlyItsCaller(t *testing.T) {
	imgs := goldenPixels(t, 3)
	want := unbatchedResults(t, imgs)
	bad := slices.Clone(imgs[0])
	for i := 100; i < 400; i++ {
		bad[i] = float32(math.NaN())
	}
	c, log := loadBatching(t, 500*time.Millisecond)
	release := holdBatch(c)
	out := runCalls(t, c, background(4), [][][]float32{{imgs[0]}, {bad}, {imgs[1], imgs[2]}, {imgs[2]}})
	release()
	if !errors.Is(out[1].err, ErrNonFinite) || out[1].res != nil {
		t.Errorf("NaN caller: %d results, error %v; want ErrNonFinite", len(out[1].res), out[1].err)
	}
	for k, idx := range map[int][]int{0: {0}, 2: {1, 2}, 3: {2}} {
		if out[k].err != nil {
			t.Fatalf("clean call %d: %v", k, out[k].err)
		}
		for j, i := range idx {
			if !sameResult(out[k].res[j], want[i], 1e-5) {
				t.Errorf("clean call %d result %d is not image %d's", k, j, i)
			}
		}
	}
	if got := log.get(); !slices.Equal(got, []int{5, 4}) {
		t.Errorf("model batches %v, want [5 4] (the batch, then the clean calls again)", got)
	}
}

// TestBatchCallerLeaves cancels callers before and after their batch starts.
func TestBatchCallerLeaves(t *testing.T) {
	imgs := goldenPixels(t, 2)
	want := unbatchedResults(t, imgs)

	t.Run("before the batch starts", func(t *testing.T) {
		const window = 2 * time.Second
		c, log := loadBatching(t, window)
		release := holdBatch(c) // the batch stays open for the window
		defer release()
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		out := runCalls(t, c, []context.Context{ctx, context.Background()}, [][][]float32{{imgs[0]}, {imgs[1]}})
		if !errors.Is(out[0].err, context.Canceled) || out[0].dur > window/2 {
			t.Errorf("cancelled caller: error %v after %v; want context.Canceled at once", out[0].err, out[0].dur)
		}
		if out[1].err != nil || !sameResult(out[1].res[0], want[1], 1e-5) {
			t.Errorf("other caller: error %v", out[1].err)
		}
		if got := log.get(); !slices.Equal(got, []int{1}) {
			t.Errorf("model batches %v, want [1]: the cancelled caller's image must not run", got)
		}
	})

	t.Run("after the batch starts", func(t *testing.T) {
		c, log := loadBatching(t, 500*time.Millisecond)
		// Hold the model thread so that the batch, once started, waits there.
		hold, held := make(chan struct{}), make(chan struct{})
		go c.rt.Run(func() error { close(held); <-hold; return nil })
		<-held
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			defer close(hold)
			deadline := time.Now().Add(10 * time.Second)
			for len(log.get()) == 0 && time.Now().Before(deadline) { // the batch has started
				time.Sleep(time.Millisecond)
			}
			cancel()
			time.Sleep(50 * time.Millisecond)
		}()
		release := holdBatch(c)
		out := runCalls(t, c, []context.Context{ctx, context.Background()}, [][][]float32{{imgs[0]}, {imgs[1]}})
		release()
		if !errors.Is(out[0].err, context.Canceled) {
			t.Errorf("cancelled caller: %v, want context.Canceled", out[0].err)
		}
		if out[1].err != nil || !sameResult(out[1].res[0], want[1], 1e-5) {
			t.Errorf("other caller: error %v", out[1].err)
		}
		if got := log.get(); !slices.Equal(got, []int{2}) {
			t.Errorf("model batches %v, want [2]", got)
		}
	})
}

// TestBatchLoneCallerDoesNotWait: with a long window, a caller alone in the checker runs at once,
// call after call.
func TestBatchLoneCallerDoesNotWait(t *testing.T) {
	imgs := goldenPixels(t, 1)
	const window = 5 * time.Second
	c, log := loadBatching(t, window)
	for i := range 3 {
		start := time.Now()
		if _, err := c.CheckPixels(context.Background(), imgs[0], 1); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > window/2 {
			t.Fatalf("call %d took %v: a lone caller waited for the window", i, d)
		}
	}
	if got := log.get(); !slices.Equal(got, []int{1, 1, 1}) {
		t.Errorf("model batches %v, want [1 1 1]", got)
	}
}

// TestBatchClose closes the checker while a call waits in an open batch, and calls it afterwards.
func TestBatchClose(t *testing.T) {
	imgs := goldenPixels(t, 1)
	c, log := loadBatching(t, 10*time.Second)
	holdBatch(c) // never withdrawn: the batch would stay open for the whole window
	time.AfterFunc(200*time.Millisecond, func() { c.Close() })
	out := runCalls(t, c, background(1), [][][]float32{{imgs[0]}})
	if !errors.Is(out[0].err, ErrClosed) || out[0].dur > 5*time.Second {
		t.Errorf("waiting call at Close: error %v after %v; want ErrClosed at once", out[0].err, out[0].dur)
	}
	if _, err := c.CheckPixels(context.Background(), imgs[0], 1); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Close: %v, want ErrClosed", err)
	}
	if got := log.get(); len(got) != 0 {
		t.Errorf("model batches %v after Close, want none", got)
	}
}

// TestBatchLoopersMerge starts two callers in a loop out of phase (the first runs alone while the
// model thread is held, the second queues behind it): after the first batches they must share one
// batch a round instead of taking turns on the model for ever.
func TestBatchLoopersMerge(t *testing.T) {
	imgs := goldenPixels(t, 2)
	c, log := loadBatching(t, 2*time.Second)
	hold, held := make(chan struct{}), make(chan struct{})
	go c.rt.Run(func() error { close(held); <-hold; return nil })
	<-held
	const rounds = 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for k := range 2 {
		wg.Go(func() {
			for range rounds {
				if _, err := c.CheckPixels(context.Background(), imgs[k], 1); err != nil {
					errs <- err
				}
			}
		})
		if k == 0 { // the first caller is on the model thread before the second starts
			deadline := time.Now().Add(10 * time.Second)
			for len(log.get()) == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // the second call queues behind the first
	close(hold)
	waitAll(t, &wg, 60*time.Second, "the loops")
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sizes := log.get()
	sum := 0
	for _, s := range sizes {
		sum += s
	}
	if sum != 2*rounds || len(sizes) > rounds+3 {
		t.Errorf("model batches %v: want %d images in at most %d batches (the two callers together)", sizes, 2*rounds, rounds+3)
	}
}
