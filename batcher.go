package safety

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Dynamic batching: with WithBatchWindow(d), concurrent CheckPixels (and Check) calls that bring
// fewer images than the batch size are gathered into one model batch by a dispatcher goroutine.
//
// A call that finds no other call pending, and no batch that ended less than d ago expecting more
// than one caller back, runs at once on its own goroutine, as without batching. Otherwise it goes to
// the dispatcher, which takes the first waiting call, then keeps gathering until the batch is full,
// until every call expected has joined (those pending and, less than d after a batch, also the
// callers that batch answered), or until d has passed since the batch opened — whichever comes
// first. A call that does not fit in what is left of the batch opens the next one. While a batch
// runs on the model thread, new calls queue up and form the next batch.
//
// Each caller gets exactly its own results. A caller whose context ends before its batch starts
// leaves (its images are not run); once its batch has started it still returns at once with the
// context's error (after its pixels have been copied). An error of the scoring that belongs to one
// image (ErrNonFinite) reaches only that image's caller: the other callers of the batch are run again
// without it, so that their results never come from a batch that held a non-finite image. An error
// of the model call itself (ErrTorch, ErrClosed) reaches every caller of the batch.

// WithBatchWindow turns on dynamic batching: a CheckPixels or Check call with fewer images than the
// batch size waits at most d for concurrent calls and runs with them as one model batch. 0, the
// default, turns it off: each call runs alone. A caller alone in the checker does not wait: it runs
// at once, unless a batch of several callers ended less than d ago (callers in a loop are then about
// to come back, and the next batch waits for them). Each caller gets exactly its own
// results; a caller whose context ends before its batch starts leaves it; an image whose output is
// not finite fails only its own caller (ErrNonFinite), the other callers of its batch being run
// again without it. Calls with at least the batch size of images run directly, as without batching.
//
// A window of a few milliseconds is enough for callers that come back at once; it bounds the extra
// latency a call can see when the callers it waits for do not come.
//
// As in the reference, where an image's batch neighbours change the order of floating-point
// reductions, the third decimal of a rounded score (and the last bits of the raw similarities) can
// move with the batch an image happens to share.
func WithBatchWindow(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 || d > time.Minute {
			return fmt.Errorf("%w: batch window %v (want 0 to 1m)", ErrInvalidOption, d)
		}
		o.batchWindow = d
		return nil
	}
}

// WithBatchObserver calls fn with the number of images of every model batch the checker runs
// (batched calls and direct ones), on the goroutine that runs the batch; fn must be fast and safe for
// concurrent use. A server uses it for a batch-size histogram.
func WithBatchObserver(fn func(images int)) Option {
	return func(o *options) error {
		o.batchObserver = fn
		return nil
	}
}

// member states: a waiting member can still leave; a taken one is in a batch.
const (
	memberWaiting int32 = iota
	memberTaken
	memberLeft
)

// batchCall is one CheckPixels call waiting in the batcher.
type batchCall struct {
	ctx    context.Context
	pixels []float32 // [n, 3, S, S]; read by the dispatcher only while the call is taken
	n      int
	state  atomic.Int32
	copied chan struct{} // closed once a taken call's pixels have been copied
	done   chan batchReply
}

type batchReply struct {
	results []Result
	err     error
}

// batcher gathers calls into model batches (see WithBatchWindow).
type batcher struct {
	c       *Checker
	window  time.Duration
	calls   chan *batchCall
	quit    chan struct{}
	exited  chan struct{}
	once    sync.Once
	pending atomic.Int64 // calls submitted and neither answered nor gone

	solo       atomic.Bool  // a lone call is running without the dispatcher
	lastExpect atomic.Int64 // calls expected for the next batch when the previous one ended
	lastEnd    atomic.Int64 // when it ended (UnixNano)

	buf []float32 // dispatcher only: the batch input, reused
}

func newBatcher(c *Checker, window time.Duration) *batcher {
	b := &batcher{c: c, window: window, calls: make(chan *batchCall),
		quit: make(chan struct{}), exited: make(chan struct{})}
	go b.loop()
	return b
}

// close stops the dispatcher; calls waiting or arriving later get ErrClosed. Idempotent.
func (b *batcher) close() {
	b.once.Do(func() { close(b.quit) })
	<-b.exited
}

// check submits n images (pixels [n, 3, S, S]) and waits for their results.
func (b *batcher) check(ctx context.Context, pixels []float32, n int) ([]Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.pending.Load() == 0 && (!b.recent() || b.lastExpect.Load() <= 1) && b.solo.CompareAndSwap(false, true) {
		// Alone in the checker: run at once on this goroutine, as without batching.
		defer b.solo.Store(false)
		pooled, embeds, err := b.c.forward(ctx, pixels, n)
		b.ended(1)
		if err != nil {
			return nil, err
		}
		return b.c.appendResults(make([]Result, 0, n), pooled, embeds, n)
	}
	call := &batchCall{ctx: ctx, pixels: pixels, n: n, copied: make(chan struct{}), done: make(chan batchReply, 1)}
	b.pending.Add(1)
	select {
	case b.calls <- call:
	case <-ctx.Done():
		b.pending.Add(-1)
		return nil, ctx.Err()
	case <-b.quit:
		b.pending.Add(-1)
		return nil, ErrClosed
	}
	select {
	case r := <-call.done:
		return r.results, r.err
	case <-ctx.Done():
		if call.state.CompareAndSwap(memberWaiting, memberLeft) {
			b.pending.Add(-1)
		} else {
			// Taken: the dispatcher may be reading the pixels; it closes copied right after.
			<-call.copied
		}
		return nil, ctx.Err()
	}
}

// recent reports whether the previous batch ended less than a window ago.
func (b *batcher) recent() bool {
	return time.Now().UnixNano()-b.lastEnd.Load() < int64(b.window)
}

// ended records a batch of calls that has just been answered. The next batch expects the calls
// already pending and, for a window, the callers just answered: callers in a loop come back at once,
// and waiting for them keeps the batches whole (without it, two groups of callers that once fell
// into separate batches would alternate on the model for ever).
func (b *batcher) ended(calls int) {
	b.lastExpect.Store(b.pending.Load() + int64(calls))
	b.lastEnd.Store(time.Now().UnixNano())
}

// answer sends a taken call its reply.
func (b *batcher) answer(call *batchCall, r batchReply) {
	b.pending.Add(-1)
	call.done <- r
}

// loop is the dispatcher goroutine. A batch closes when it is full, when the window has passed since
// it opened, or when no more calls are expected: every call submitted has joined and, if the previous
// batch ended less than a window ago, as many calls as were pending then plus the callers it answered
// (see ended).
func (b *batcher) loop() {
	defer close(b.exited)
	var next *batchCall // a call that did not fit in the previous batch
	for {
		first := next
		next = nil
		if first == nil {
			select {
			case first = <-b.calls:
			case <-b.quit:
				return
			}
		}
		returning := b.recent()
		expected := func() int64 {
			if returning {
				return max(b.pending.Load(), b.lastExpect.Load())
			}
			return b.pending.Load()
		}
		batch, images := []*batchCall{first}, first.n
		timer := time.NewTimer(b.window)
	gather:
		for images < b.c.opts.batchSize && int64(len(batch)) < expected() {
			select {
			case call := <-b.calls:
				if images+call.n > b.c.opts.batchSize {
					next = call
					break gather
				}
				batch, images = append(batch, call), images+call.n
			case <-timer.C:
				break gather
			case <-b.quit:
				timer.Stop()
				b.fail(append(batch, next), ErrClosed)
				return
			}
		}
		timer.Stop()
		b.ended(b.run(batch))
	}
}

// fail answers every waiting call with err (calls that left and nil entries are skipped).
func (b *batcher) fail(calls []*batchCall, err error) {
	for _, call := range calls {
		if call != nil && call.state.CompareAndSwap(memberWaiting, memberTaken) {
			close(call.copied)
			b.answer(call, batchReply{err: err})
		}
	}
}

// run runs one batch: calls that left are dropped, the rest are taken, copied into one input, run as
// one model call and scored call by call. Calls with a non-finite image get that error; if there are
// any, the other calls run again without them (at most len(calls) rounds, each with fewer calls).
func (b *batcher) run(calls []*batchCall) int {
	var taken []*batchCall
	for _, call := range calls {
		if call.state.CompareAndSwap(memberWaiting, memberTaken) {
			taken = append(taken, call)
		}
	}
	if len(taken) == 0 {
		return 0
	}
	s := b.c.info.ImageSize
	per := 3 * s * s
	pixels := b.buf[:0]
	for _, call := range taken {
		pixels = append(pixels, call.pixels[:call.n*per]...)
		close(call.copied)
	}
	b.buf = pixels // reused by the next batch: forward copies it into a tensor
	p, d := b.c.info.ProjectionDim, b.c.info.Vision.HiddenSize
	for len(taken) > 0 {
		n := len(pixels) / per
		ctx, cancel := anyAlive(taken)
		pooled, embeds, err := b.c.forward(ctx, pixels, n)
		cancel()
		if err != nil {
			for _, call := range taken {
				b.answer(call, batchReply{err: err})
			}
			return len(calls)
		}
		replies := make([]batchReply, len(taken))
		var clean []int
		off := 0
		for i, call := range taken {
			replies[i].results, replies[i].err = b.c.appendResults(make([]Result, 0, call.n),
				pooled[off*d:(off+call.n)*d], embeds[off*p:(off+call.n)*p], call.n)
			off += call.n
			if errors.Is(replies[i].err, ErrNonFinite) {
				b.answer(call, replies[i])
			} else {
				clean = append(clean, i)
			}
		}
		if len(clean) == len(taken) {
			for i, call := range taken {
				b.answer(call, replies[i])
			}
			return len(calls)
		}
		// Run the clean calls again on their own, so that no result comes from a batch that held a
		// non-finite image.
		var again []*batchCall
		var kept []float32
		off = 0
		for i, call := range taken {
			if len(clean) > 0 && clean[0] == i {
				clean = clean[1:]
				again = append(again, call)
				kept = append(kept, pixels[off*per:(off+call.n)*per]...)
			}
			off += call.n
		}
		taken, pixels = again, kept
	}
	return len(calls)
}

// anyAlive returns a context that ends when the contexts of all the calls have ended: the batch is
// worth finishing while one of its callers still waits.
func anyAlive(calls []*batchCall) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int64
	left.Store(int64(len(calls)))
	stops := make([]func() bool, 0, len(calls))
	for _, call := range calls {
		stops = append(stops, context.AfterFunc(call.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
