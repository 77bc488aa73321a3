package s3

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/errs"
)

// resuming reads an object and, when the connection breaks or stalls part
// way, asks again for the rest (a range request pinned to the same ETag, so
// a replaced object is never spliced in).
type resuming struct {
	s        *Storage
	ctx      context.Context
	key, obj string
	etag     string
	off      int64
	body     io.ReadCloser
	failures int
	dog      *watchdog // cancels the current request when no byte arrives
	end      error     // io.EOF or the error that ended the download
	released bool

	mu     sync.Mutex
	req    context.Context         // the current request's
	cancel context.CancelCauseFunc // and its cancel
}

// get starts a request for the object from r.off, watched for stalls.
func (r *resuming) get(opts minio.GetObjectOptions) (io.ReadCloser, minio.ObjectInfo, error) {
	if r.dog == nil {
		r.dog = watch(r.s.stall, r.interrupt)
	}
	ctx, cancel := context.WithCancelCause(r.ctx)
	r.dog.kick()
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

// interrupt cancels the current request for a stall.
func (r *resuming) interrupt() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		r.cancel(errStalled)
	}
}

// stalled reports whether the current request was cancelled for a stall.
func (r *resuming) stalled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.req != nil && errors.Is(context.Cause(r.req), errStalled)
}

// Read returns the object's bytes. At the end, and at an error that ends the
// download, it releases the request and the watch at once: a reader that
// failed (or finished) and is never closed keeps no goroutine or connection.
// Later reads return the same end.
func (r *resuming) Read(p []byte) (int, error) {
	if r.end != nil {
		return 0, r.end
	}
	n, err := r.read(p)
	if err != nil {
		r.end = err
		r.release()
	}
	return n, err
}

func (r *resuming) read(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if n > 0 {
			r.dog.kick()
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
		if err := r.resume(err); err != nil {
			return 0, err
		}
	}
}

// resume replaces the broken body, after a wait, with a request for the
// rest of the object. A failed request becomes a body that returns its error,
// for Read to judge.
func (r *resuming) resume(cause error) error {
	r.failures++
	r.body.Close()
	wait := backoff(r.failures - 1)
	r.s.log.Warn("storage download broke, resuming", "storage", r.s.display, "key", r.key, "offset", r.off,
		"attempt", r.failures, "retry_in", wait.String(), "error", errs.Root(cause).Error())
	select {
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-time.After(wait):
	}
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(r.off, 0); err != nil {
		return err
	}
	if r.etag != "" {
		if err := opts.SetMatchETag(r.etag); err != nil {
			return err
		}
	}
	body, _, err := r.get(opts)
	if err != nil {
		body = io.NopCloser(errReader{err})
	}
	r.body = body
	return nil
}

// Close ends the current request and the watch for stalls.
func (r *resuming) Close() error {
	if r.end == nil {
		r.end = fs.ErrClosed
	}
	return r.release()
}

// release stops the watch, cancels the current request and closes its body,
// once.
func (r *resuming) release() error {
	if r.released {
		return nil
	}
	r.released = true
	if r.dog != nil {
		r.dog.stop()
	}
	r.mu.Lock()
	if r.cancel != nil {
		r.cancel(nil)
	}
	r.mu.Unlock()
	if r.body == nil {
		return nil
	}
	return r.body.Close()
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
