package ftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/jlaffaye/ftp"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/storage"
)

// Open returns the file's content. The download holds its own control
// connection until Close; when it breaks part way, it resumes from where it
// stopped (REST) on a new connection, if the file's size and time are the
// same, so a replaced file is never spliced in.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	r := &download{s: s, ctx: ctx, key: key}
	if err := r.start(); err != nil {
		if code(err) == ftp.StatusFileUnavailable || errors.Is(err, errNotFile) {
			return nil, storage.NotExist(key)
		}
		if r.fail != nil {
			return nil, r.fail
		}
		return nil, s.err("read", key, err)
	}
	return r, nil
}

// download is an Open in progress.
type download struct {
	s        *Storage
	ctx      context.Context
	key      string
	pin      storage.Object // the file's size and time when the download began
	off      int64
	c        *conn
	body     *ftp.Response
	failures int
	end      error // io.EOF or the error that ended the download
	fail     error // an error that is already one clear line
	changed  bool  // the file changed since the download began
}

// start connects, checks the file (pinning its size and time at the first
// start) and asks for it from r.off.
func (r *download) start() error {
	r.fail = nil
	c, err := r.s.dial(r.ctx)
	if err != nil {
		r.fail = err
		return err
	}
	o, err := r.s.stat(c, r.key)
	if err != nil {
		c.close()
		return err
	}
	if r.pin.ModTime.IsZero() {
		r.pin = o
	} else if o.Size != r.pin.Size || !o.ModTime.Equal(r.pin.ModTime) {
		c.close()
		r.changed = true
		r.fail = fmt.Errorf("storage %s: read %s: the file changed while it was read (was %d bytes of %s, now %d bytes of %s)",
			r.s, r.key, r.pin.Size, r.pin.ModTime.Format(time.RFC3339), o.Size, o.ModTime.Format(time.RFC3339))
		return r.fail
	}
	body, err := c.RetrFrom(r.s.keyPath(r.key), uint64(r.off))
	if err != nil {
		c.close()
		return err
	}
	r.c, r.body = c, body
	return nil
}

// Read returns the file's bytes. At the end, and at an error that ends the
// download, it releases the connection at once. Later reads return the same
// end.
func (r *download) Read(p []byte) (int, error) {
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

func (r *download) read(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if n > 0 {
			r.failures = 0
			return n, nil
		}
		if err == io.EOF && r.off == r.pin.Size {
			return 0, io.EOF
		}
		if err == nil {
			continue
		}
		if err == io.EOF {
			err = fmt.Errorf("the download ended at byte %d of %d", r.off, r.pin.Size)
		}
		if r.ctx.Err() != nil {
			return 0, r.s.err("read", r.key, r.ctx.Err())
		}
		if r.failures >= r.s.retries {
			return 0, r.s.err("read", r.key, err)
		}
		if err := r.resume(err); err != nil {
			return 0, err
		}
	}
}

// resume replaces the broken connection, after a wait, with a new one that
// asks for the rest of the file, up to retries times.
func (r *download) resume(cause error) error {
	for {
		r.failures++
		r.release()
		wait := time.Duration(1<<min(r.failures-1, 5)) * time.Second
		r.s.log.Warn("storage download broke, resuming", "storage", r.s.String(), "key", r.key, "offset", r.off,
			"attempt", r.failures, "retry_in", wait.String(), "error", errs.Root(cause).Error())
		select {
		case <-r.ctx.Done():
			return r.s.err("read", r.key, r.ctx.Err())
		case <-time.After(wait):
		}
		err := r.start()
		switch {
		case err == nil:
			return nil
		case r.changed:
			return r.fail
		case r.failures >= r.s.retries && r.fail != nil:
			return r.fail
		case r.failures >= r.s.retries:
			return r.s.err("read", r.key, err)
		}
		cause = err
	}
}

// Close ends the download and its connection.
func (r *download) Close() error {
	if r.end == nil {
		r.end = fs.ErrClosed
	}
	r.release()
	return nil
}

// release closes the data and control connections, once.
func (r *download) release() {
	if r.c == nil {
		return
	}
	if r.end == io.EOF && r.body != nil {
		_ = r.body.Close() // reads the server's 226
	}
	r.c.close()
	r.c, r.body = nil, nil
}
