package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"remora.dev/remora/internal/errs"
)

// ErrStalled is why a request was given up: no data moved for the stall
// time (stall= in the storage URL).
var ErrStalled = errors.New("no data moved")

// ErrChanged is why a download was given up: the object that answered the
// request for the rest is not the one the download began with.
var ErrChanged = errors.New("the object changed while it was read")

// maxBackoff is the longest wait between attempts.
const maxBackoff = 30 * time.Second

// Backoff is the wait after the n-th failed attempt (from 0): 1 s, 2 s,
// 4 s, ... at most 30 s.
func Backoff(n int) time.Duration { return min(time.Second<<min(n, 10), maxBackoff) }

// RetriedError is the last error of an operation that was tried N times.
type RetriedError struct {
	Err error
	N   int
}

func (e *RetriedError) Error() string { return fmt.Sprintf("%v (%d attempts)", e.Err, e.N) }
func (e *RetriedError) Unwrap() error { return e.Err }

// Version tells one version of an object from a replacement.
type Version struct {
	// ID is compared as is: an ETag, a generation, or the size and time of
	// a file, whatever the server offers that changes when the object does.
	ID string
	// Size is the object's whole size, or -1 if unknown. A body that ends
	// before it is a broken connection, not the end of the object.
	Size int64
}

// Download is one object's download that resumes where it broke: when the
// connection breaks or stalls part way, it asks for the rest of the same
// version of the object, after a wait, up to Retries times in a row, and
// logs each resumption. Start begins it.
type Download struct {
	Storage fmt.Stringer // names the storage in logs and errors
	Key     string
	Transfer
	Log *slog.Logger // nil discards

	// OpenAt asks for the object from byte off. pin is the zero Version at
	// the first call, then the version that first answered, which OpenAt
	// makes the server check where the protocol allows (If-Match, a
	// generation); it returns the version that answered, which must be the
	// pinned one or the download ends with ErrChanged. The body must end
	// when ctx does: that is how a stalled request is given up.
	OpenAt func(ctx context.Context, off int64, pin Version) (io.ReadCloser, Version, error)
	// Retryable tells a broken connection from an answer that another
	// attempt would get again; nil: every error is worth another attempt.
	// A stall and a body that ends short always are.
	Retryable func(error) bool
	// NotFound tells the first request's answer for a missing object; nil:
	// errors.Is(err, fs.ErrNotExist).
	NotFound func(error) bool
	// Err turns the error that ends the download into one line naming the
	// storage; nil: "storage S: get KEY: error". Stalls and changed objects
	// get their own line without it.
	Err func(error) error
	// Backoff is the wait after the n-th failure in a row (from 0); nil:
	// storage.Backoff.
	Backoff func(n int) time.Duration
	// RetryFirst lets the first request be retried too, not only
	// resumptions: for a backend whose every request is retried.
	RetryFirst bool
}

// Start sends the first request and returns the object's content. A missing
// object gives an error matching fs.ErrNotExist.
func (d Download) Start(ctx context.Context) (io.ReadCloser, error) {
	d.defaults()
	r := &resuming{d: &d, ctx: ctx, busy: true}
	r.dog = Watch(d.Stall, r.interrupt)
	defer r.idle()
	for {
		err := r.open()
		if err == nil {
			return r, nil
		}
		if r.d.NotFound(err) {
			r.release()
			return nil, NotExist(d.Key)
		}
		if !d.RetryFirst || !r.canRetry(err) {
			r.release()
			return nil, r.fail(err)
		}
		if err := r.wait(err); err != nil {
			r.release()
			return nil, err
		}
	}
}

func (d *Download) defaults() {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Retryable == nil {
		d.Retryable = func(error) bool { return true }
	}
	if d.NotFound == nil {
		d.NotFound = func(err error) bool { return errors.Is(err, fs.ErrNotExist) }
	}
	if d.Err == nil {
		d.Err = func(err error) error { return fmt.Errorf("storage %s: get %s: %w", d.Storage, d.Key, err) }
	}
	if d.Backoff == nil {
		d.Backoff = Backoff
	}
	if d.Stall <= 0 {
		d.Stall = DefaultStall
	}
}

// resuming is a Download under way.
type resuming struct {
	d        *Download
	ctx      context.Context
	pin      Version
	opened   bool // pin is set
	off      int64
	body     io.ReadCloser
	failures int   // in a row, since data last arrived
	pending  error // a failure that came with the last bytes
	end      error // io.EOF or the error that ended the download
	released bool
	dog      *Watchdog // cancels the current request when no byte arrives

	mu     sync.Mutex
	busy   bool                    // a Read is under way: a stall is the server's, not the caller's
	req    context.Context         // the current request's
	cancel context.CancelCauseFunc // and its cancel
}

// open starts a request from r.off, watched for stalls.
func (r *resuming) open() error {
	ctx, cancel := context.WithCancelCause(r.ctx)
	r.mu.Lock()
	if r.cancel != nil {
		r.cancel(nil)
	}
	r.req, r.cancel = ctx, cancel
	r.mu.Unlock()
	r.dog.Kick()
	body, v, err := r.d.OpenAt(ctx, r.off, r.pin)
	if err != nil {
		return r.cause(err)
	}
	switch {
	case !r.opened:
		r.pin, r.opened = v, true
	case v.ID != r.pin.ID:
		body.Close()
		return ErrChanged
	}
	r.body = body
	return nil
}

// interrupt cancels the current request for a stall, if a read is waiting
// for it: the time the caller takes between reads is not the server's.
func (r *resuming) interrupt() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy && r.cancel != nil {
		r.cancel(ErrStalled)
	}
}

// cause is ErrStalled for the error of a request the watch cancelled.
func (r *resuming) cause(err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() == nil && r.req != nil && errors.Is(context.Cause(r.req), ErrStalled) {
		return ErrStalled
	}
	return err
}

func (r *resuming) idle() {
	r.mu.Lock()
	r.busy = false
	r.mu.Unlock()
}

// Read returns the object's bytes. At the end, and at an error that ends the
// download, it releases the request and the watch at once: a reader that
// failed (or finished) and is never closed keeps no goroutine or connection.
// Later reads return the same end.
func (r *resuming) Read(p []byte) (int, error) {
	if r.end != nil {
		return 0, r.end
	}
	r.mu.Lock()
	r.busy = true
	r.mu.Unlock()
	r.dog.Kick()
	n, err := r.read(p)
	r.idle()
	if err != nil {
		r.end = err
		r.release()
	}
	return n, err
}

func (r *resuming) read(p []byte) (int, error) {
	for {
		var n int
		var err error
		if r.pending != nil {
			err, r.pending = r.pending, nil
		} else {
			n, err = r.body.Read(p)
		}
		r.off += int64(n)
		if n > 0 {
			r.dog.Kick()
			r.failures = 0
			if err != nil && err != io.EOF {
				// Handled on the next read: a body that failed may say
				// io.EOF from then on.
				r.pending, err = err, nil
			}
			if err == io.EOF && r.short() {
				err = nil
			}
			return n, err
		}
		switch {
		case err == nil:
			return 0, nil
		case err == io.EOF && !r.short():
			return 0, io.EOF
		case err == io.EOF:
			err = fmt.Errorf("the download ended at byte %d of %d: %w", r.off, r.pin.Size, io.ErrUnexpectedEOF)
		}
		if err = r.cause(err); !r.canRetry(err) {
			return 0, r.fail(err)
		}
		if err := r.resume(err); err != nil {
			return 0, err
		}
	}
}

// short tells whether the body ended before the object's size.
func (r *resuming) short() bool { return r.pin.Size >= 0 && r.off < r.pin.Size }

// canRetry tells whether a failure is worth another request.
func (r *resuming) canRetry(err error) bool {
	if r.ctx.Err() != nil || errors.Is(err, ErrChanged) || r.failures >= r.d.Retries {
		return false
	}
	return errors.Is(err, ErrStalled) || errors.Is(err, io.ErrUnexpectedEOF) || r.d.Retryable(err)
}

// resume replaces the broken body, after a wait, with a request for the
// rest of the object, until one answers or the failures are too many.
func (r *resuming) resume(cause error) error {
	r.body.Close()
	r.body = nil
	for {
		if err := r.wait(cause); err != nil {
			return err
		}
		err := r.open()
		if err == nil {
			return nil
		}
		if !r.canRetry(err) {
			return r.fail(err)
		}
		cause = err
	}
}

// wait counts a failure, logs it and waits before the next attempt.
func (r *resuming) wait(cause error) error {
	r.failures++
	wait := r.d.Backoff(r.failures - 1)
	r.d.Log.Warn("storage download broke, resuming", "storage", r.d.Storage.String(), "key", r.d.Key, "offset", r.off,
		"attempt", r.failures, "of", r.d.Retries, "retry_in", wait.String(), "error", errs.Root(cause).Error())
	select {
	case <-r.ctx.Done():
		return r.fail(r.ctx.Err())
	case <-time.After(wait):
		return nil
	}
}

// fail turns the error that ends the download into one line.
func (r *resuming) fail(err error) error {
	tries := ""
	if r.failures > 0 {
		tries = fmt.Sprintf(" (%d attempts)", r.failures+1)
	}
	switch {
	case r.ctx.Err() != nil:
		return fmt.Errorf("storage %s: get %s: %w", r.d.Storage, r.d.Key, r.ctx.Err())
	case errors.Is(err, ErrStalled):
		return fmt.Errorf("storage %s: get %s: %w for %s%s: check the network, or raise stall= in the storage URL for a slow link", r.d.Storage, r.d.Key, ErrStalled, r.d.Stall, tries)
	case errors.Is(err, ErrChanged):
		return fmt.Errorf("storage %s: get %s: %w (resuming at byte %d): read it again", r.d.Storage, r.d.Key, ErrChanged, r.off)
	}
	if r.failures > 0 {
		err = &RetriedError{err, r.failures + 1}
	}
	return r.d.Err(err)
}

// Close ends the current request and the watch for stalls.
func (r *resuming) Close() error {
	if r.end == nil {
		r.end = fs.ErrClosed
	}
	return r.release()
}

// release closes the current body, then cancels its request and stops the
// watch, once. The body goes first: closing it may still talk to the server
// (an FTP download reads the server's last reply).
func (r *resuming) release() error {
	if r.released {
		return nil
	}
	r.released = true
	var err error
	if r.body != nil {
		err = r.body.Close()
		r.body = nil
	}
	r.dog.Stop()
	r.mu.Lock()
	if r.cancel != nil {
		r.cancel(nil)
	}
	r.mu.Unlock()
	return err
}
