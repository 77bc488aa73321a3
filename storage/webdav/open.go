package webdav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/storage"
)

// maxResumes is how many times in a row a broken download is resumed.
const maxResumes = 5

// backoffUnit is the first wait before resuming; it doubles each time.
var backoffUnit = time.Second

func checkKey(key string) error { return storage.CheckKey(key) }

// Open returns the object's content. A download that breaks or stalls part
// way resumes from where it stopped, with a range request that only the same
// version of the object (its ETag) may answer.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	r := &resuming{s: s, ctx: ctx, key: key}
	resp, err := r.get()
	if err != nil {
		return nil, s.err("get", key, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		r.drop(resp)
		return nil, storage.NotExist(key)
	default:
		r.drop(resp)
		return nil, s.err("get", key, unexpected(resp))
	}
	r.body = resp.Body
	r.version = version(resp)
	r.strong = strings.HasPrefix(resp.Header.Get("ETag"), `"`)
	return r, nil
}

// resuming reads an object, asking again for the rest when the connection
// breaks or stalls.
type resuming struct {
	s        *Storage
	ctx      context.Context
	key      string
	version  string // what tells this version of the object from a replacement
	strong   bool   // version is a strong ETag, for If-Match
	off      int64
	body     io.ReadCloser
	failures int
	pending  error // a failure that came with the last bytes
	end      error

	mu     sync.Mutex
	cancel context.CancelCauseFunc // the current request's
	rctx   context.Context
	timer  *time.Timer
}

// get starts a GET from r.off, watched for stalls.
func (r *resuming) get() (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(r.ctx)
	req, err := r.s.newRequest(ctx, http.MethodGet, r.key, nil)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	if r.off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(r.off, 10)+"-")
		if r.strong {
			req.Header.Set("If-Match", r.version)
		}
	}
	r.mu.Lock()
	if r.cancel != nil {
		r.cancel(nil)
	}
	r.rctx, r.cancel = ctx, cancel
	if r.timer == nil {
		r.timer = time.AfterFunc(r.s.stall, r.interrupt)
	} else {
		r.timer.Reset(r.s.stall)
	}
	r.mu.Unlock()
	resp, err := r.s.client.Do(req)
	if err != nil && errors.Is(context.Cause(ctx), errStalled) && r.ctx.Err() == nil {
		err = errStalled
	}
	return resp, err
}

// interrupt cancels the current request for a stall.
func (r *resuming) interrupt() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancel != nil {
		r.cancel(errStalled)
	}
}

func (r *resuming) drop(resp *http.Response) {
	resp.Body.Close()
	r.release()
}

// Read returns the object's bytes; at the end, or at an error that ends the
// download, it releases the request at once. Later reads return the same
// end.
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
		var n int
		var err error
		if r.pending != nil {
			err, r.pending = r.pending, nil
		} else {
			n, err = r.body.Read(p)
		}
		r.off += int64(n)
		if n > 0 {
			r.mu.Lock()
			r.timer.Reset(r.s.stall)
			r.mu.Unlock()
			r.failures = 0
			if err != nil && err != io.EOF {
				// Handled on the next read: a body that failed may say
				// io.EOF from then on.
				r.pending, err = err, nil
			}
			return n, err
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		r.mu.Lock()
		stalled := errors.Is(context.Cause(r.rctx), errStalled)
		r.mu.Unlock()
		if stalled {
			err = errStalled
		}
		if r.ctx.Err() != nil {
			return 0, fmt.Errorf("storage %s: get %s: %w", r.s, r.key, r.ctx.Err())
		}
		if r.failures >= maxResumes {
			return 0, r.s.err("get", r.key, fmt.Errorf("%w (%d attempts)", err, r.failures+1))
		}
		if err := r.resume(err); err != nil {
			return 0, err
		}
	}
}

// resume replaces the broken body, after a wait, with the rest of the
// object. A failed request becomes a body that returns its error, for read
// to judge; an answer other than the rest of the same object ends the
// download.
func (r *resuming) resume(cause error) error {
	r.failures++
	r.body.Close()
	wait := min(backoffUnit<<(r.failures-1), 30*time.Second)
	r.s.log.Warn("storage download broke, resuming", "storage", r.s.display, "key", r.key, "offset", r.off,
		"attempt", r.failures, "retry_in", wait.String(), "error", errs.Root(cause).Error())
	select {
	case <-r.ctx.Done():
		return fmt.Errorf("storage %s: get %s: %w", r.s, r.key, r.ctx.Err())
	case <-time.After(wait):
	}
	resp, err := r.get()
	if err != nil {
		r.body = io.NopCloser(errReader{err})
		return nil
	}
	changed := resp.StatusCode == http.StatusPreconditionFailed || resp.StatusCode == http.StatusOK ||
		resp.StatusCode == http.StatusPartialContent && version(resp) != r.version
	if changed || resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		if changed {
			return fmt.Errorf("storage %s: get %s: the object changed while it was read; read it again", r.s, r.key)
		}
		return r.s.err("get", r.key, unexpected(resp))
	}
	r.body = resp.Body
	return nil
}

// Close ends the current request.
func (r *resuming) Close() error {
	if r.end == nil {
		r.end = fs.ErrClosed
	}
	return r.release()
}

// release stops the watch and ends the current request.
func (r *resuming) release() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.cancel != nil {
		r.cancel(nil)
		r.cancel = nil
	}
	if r.body != nil {
		err := r.body.Close()
		r.body = nil
		return err
	}
	return nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// version is what tells a version of an object from a replacement: its
// ETag, else its time and size. A fresh file's ETag may be weak (Apache
// weakens those written in the last second), which If-Match does not take,
// so a resumed answer's version is also compared with the first, with the
// weakness ignored: the same file's ETag turns strong a second later.
func version(resp *http.Response) string {
	if e := resp.Header.Get("ETag"); e != "" {
		return strings.TrimPrefix(e, "W/")
	}
	size := resp.Header.Get("Content-Length")
	if cr := resp.Header.Get("Content-Range"); cr != "" {
		size = cr[strings.LastIndex(cr, "/")+1:]
	}
	return resp.Header.Get("Last-Modified") + " " + size
}
