package repo

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// throttle caps the bytes per second a backup reads from the database
// (remora.dev/max-rate). It sits where the dump stream enters the write
// chain: a write waits for its tokens, the pipe from the dump tool fills,
// and the tool itself blocks writing, so the database serves the dump no
// faster than the rate. One throttle serves a whole backup, object after
// object.
type throttle struct {
	lim    *rate.Limiter
	tokens atomic.Int64 // bytes let through
	waited atomic.Int64 // nanoseconds spent waiting for tokens
	p      *Progress    // nil: not followed
}

// maxBurst bounds the burst: what passes at once when the stream was idle,
// and the largest piece a write is cut into.
const maxBurst = 1 << 20

func newThrottle(bytesPerSecond int64, p *Progress) *throttle {
	burst := int(min(bytesPerSecond, maxBurst))
	return &throttle{lim: rate.NewLimiter(rate.Limit(bytesPerSecond), burst), p: p}
}

func (t *throttle) burst() int { return t.lim.Burst() }

// writer is w behind the throttle; a wait ends early when ctx does.
func (t *throttle) writer(ctx context.Context, w io.Writer) io.Writer {
	return &throttled{ctx: ctx, t: t, w: w}
}

type throttled struct {
	ctx context.Context
	t   *throttle
	w   io.Writer
}

func (w *throttled) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), w.t.burst())
		if err := w.t.wait(w.ctx, k); err != nil {
			return n, err
		}
		m, err := w.w.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// wait takes k tokens, waiting until the bucket has them. Its accounting
// (tokens taken, time waited) is what the progress shows.
func (t *throttle) wait(ctx context.Context, k int) error {
	r := t.lim.ReserveN(time.Now(), k) // k <= burst: always granted
	t.count(k, 0)
	d := r.Delay()
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	case <-timer.C:
		t.count(0, d)
		return nil
	}
}

func (t *throttle) count(tokens int, waited time.Duration) {
	t.tokens.Add(int64(tokens))
	t.waited.Add(int64(waited))
	if t.p != nil {
		t.p.throttledBytes.Add(int64(tokens))
		t.p.throttledNanos.Add(int64(waited))
	}
}
