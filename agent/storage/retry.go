package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
)

// Defaults of the s3:// options timeout= and retries=.
const (
	defaultStall   = 60 * time.Second
	defaultRetries = 5
	maxBackoff     = 30 * time.Second
)

// backoffUnit is the first wait between attempts; it doubles each time.
var backoffUnit = time.Second

// backoff is the wait after the n-th failed attempt (from 0): 1 s, 2 s, 4 s,
// ... at most maxBackoff.
func backoff(n int) time.Duration { return min(backoffUnit<<n, maxBackoff) }

// errStalled is why an attempt was cancelled: no data moved for the timeout.
var errStalled = errors.New("no progress")

// retryable tells the faults worth another attempt (the network, a stall,
// the server's 5xx, 408 and 429 answers, and S3's SlowDown-style codes) from
// those that will not change (access denied, no such bucket, bad request).
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errStalled) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && (resp.StatusCode != 0 || resp.Code != "") {
		switch resp.StatusCode {
		case 408, 429, 499, 500, 502, 503, 504, 520:
			return true
		}
		switch resp.Code {
		case "RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "SlowDownRead", "SlowDownWrite", "InternalError",
			"ServiceUnavailable", "ExpiredToken", "RequestError", "Throttling", "ThrottlingException":
			return true
		}
		return false
	}
	var nerr net.Error
	var uerr *url.Error
	return errors.As(err, &nerr) || errors.As(err, &uerr) || errors.Is(err, context.DeadlineExceeded)
}

// retry runs fn until it succeeds, fails for good, or s.retries more attempts
// have failed, waiting 1 s, 2 s, 4 s, ... (with jitter, at most 30 s) between
// attempts. Each attempt gets its own context and its own reader of body
// (when not nil: the transport of an abandoned attempt may still be reading
// its reader), watched: an attempt during which it is not read for s.stall is
// cancelled and counts as a transient fault.
func (s *S3) retry(ctx context.Context, op string, body []byte, fn func(ctx context.Context, body io.Reader) error) error {
	var err error
	for attempt := 0; ; attempt++ {
		err = s.attempt(ctx, body, fn)
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return err
		}
		if attempt >= s.retries {
			if attempt > 0 {
				return &retriedError{err, attempt + 1}
			}
			return err
		}
		wait := backoff(attempt)
		wait = wait/2 + rand.N(wait/2+1)
		slog.Default().Warn("storage request failed, retrying", "storage", s.display, "op", op, "attempt", attempt+1,
			"of", s.retries+1, "retry_in", wait.Round(time.Millisecond).String(), "error", rootCause(err).Error())
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

func (s *S3) attempt(ctx context.Context, body []byte, fn func(ctx context.Context, body io.Reader) error) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if body == nil {
		return fn(actx, nil)
	}
	w := &watched{r: bytes.NewReader(body)}
	w.left.Store(int64(len(body)))
	w.touch()
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(max(s.stall/10, 10*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				// Once the body is all read, the transport's response
				// timeout (the same length) takes over.
				if w.left.Load() > 0 && time.Since(time.Unix(0, w.last.Load())) > s.stall {
					cancel(errStalled)
					return
				}
			}
		}
	}()
	err := fn(actx, w)
	if err != nil && errors.Is(context.Cause(actx), errStalled) && ctx.Err() == nil {
		return errStalled
	}
	return err
}

// retriedError is the last error of an operation that was tried n times.
type retriedError struct {
	err error
	n   int
}

func (e *retriedError) Error() string { return fmt.Sprintf("%v (%d attempts)", e.err, e.n) }
func (e *retriedError) Unwrap() error { return e.err }

// watched is a request body that records when it was last read.
type watched struct {
	r    *bytes.Reader // read by the transport's goroutine only
	last atomic.Int64  // when it was last read
	left atomic.Int64  // bytes not read yet
}

func (w *watched) touch() { w.last.Store(time.Now().UnixNano()) }

func (w *watched) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.touch()
	}
	w.left.Store(int64(w.r.Len()))
	return n, err
}

// Seek lets minio-go rewind the body (and treat it as resendable).
func (w *watched) Seek(off int64, whence int) (int64, error) {
	n, err := w.r.Seek(off, whence)
	w.left.Store(int64(w.r.Len()))
	return n, err
}

// resuming reads an object and, when the connection breaks or stalls part
// way, asks again for the rest (a range request pinned to the same ETag, so
// a replaced object is never spliced in).
type resuming struct {
	s        *S3
	ctx      context.Context
	key, obj string
	etag     string
	off      int64
	body     io.ReadCloser
	failures int

	mu     sync.Mutex
	req    context.Context         // the current request's
	cancel context.CancelCauseFunc // and its cancel
	last   atomic.Int64            // when a byte last arrived
	done   chan struct{}           // closed by Close: stops watch
	once   sync.Once
}

// get starts a request for the object from r.off, watched for stalls.
func (r *resuming) get(opts minio.GetObjectOptions) (io.ReadCloser, minio.ObjectInfo, error) {
	if r.done == nil {
		r.done = make(chan struct{})
		go r.watch(r.done)
	}
	ctx, cancel := context.WithCancelCause(r.ctx)
	r.last.Store(time.Now().UnixNano())
	body, info, _, err := r.s.core.GetObject(ctx, r.s.bucket, r.obj, opts)
	if err != nil {
		cancel(nil)
		return nil, info, err
	}
	r.mu.Lock()
	if r.cancel != nil {
		r.cancel(nil)
	}
	r.req, r.cancel = ctx, cancel
	r.mu.Unlock()
	return body, info, nil
}

// stalled reports whether the current request was cancelled for a stall.
func (r *resuming) stalled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.req != nil && errors.Is(context.Cause(r.req), errStalled)
}

// watch cancels the current request when no byte arrived for the timeout.
func (r *resuming) watch(done <-chan struct{}) {
	tick := time.NewTicker(max(r.s.stall/10, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if time.Since(time.Unix(0, r.last.Load())) > r.s.stall {
				r.mu.Lock()
				if r.cancel != nil {
					r.cancel(errStalled)
				}
				r.mu.Unlock()
			}
		}
	}
}

func (r *resuming) Read(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if n > 0 {
			r.last.Store(time.Now().UnixNano())
			r.failures = 0
			return n, err
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if r.ctx.Err() == nil && r.stalled() {
			err = errStalled
		}
		if r.ctx.Err() != nil || !retryable(err) || r.failures >= r.s.retries {
			return 0, r.s.err("get", r.key, err)
		}
		r.failures++
		r.body.Close()
		wait := backoff(r.failures - 1)
		slog.Default().Warn("storage download broke, resuming", "storage", r.s.display, "key", r.key, "offset", r.off,
			"attempt", r.failures, "retry_in", wait.String(), "error", rootCause(err).Error())
		select {
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		case <-time.After(wait):
		}
		opts := minio.GetObjectOptions{}
		if err := opts.SetRange(r.off, 0); err != nil {
			return 0, err
		}
		if r.etag != "" {
			if err := opts.SetMatchETag(r.etag); err != nil {
				return 0, err
			}
		}
		body, _, err := r.get(opts)
		if err != nil {
			body = io.NopCloser(errReader{err})
		}
		r.body = body
	}
}

func (r *resuming) Close() error {
	if r.done != nil {
		r.once.Do(func() { close(r.done) })
	}
	r.mu.Lock()
	if r.cancel != nil {
		r.cancel(nil)
	}
	r.mu.Unlock()
	return r.body.Close()
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
