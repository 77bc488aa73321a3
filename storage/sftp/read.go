package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	sftpc "github.com/pkg/sftp"

	"remora.dev/remora/storage"
)

// Open returns the object's content. When the connection breaks part way,
// the reader reconnects and goes on from the offset where it stopped, as long
// as the file has the same size and time as when it was opened.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	r := &reader{s: s, ctx: ctx, key: key, buf: make([]byte, 0, readAhead)}
	err := s.do(ctx, func(c *conn) error { return r.open(c) })
	if errors.Is(err, fs.ErrNotExist) {
		return nil, storage.NotExist(key)
	}
	if err != nil {
		return nil, s.err("get", key, err)
	}
	if !r.fi.Mode().IsRegular() {
		r.f.Close()
		return nil, storage.NotExist(key)
	}
	return r, nil
}

// reader reads an object ahead in chunks of readAhead bytes, each fetched by
// concurrent SFTP read requests.
type reader struct {
	s        *Storage
	ctx      context.Context
	key      string
	c        *conn
	f        *sftpc.File
	fi       fs.FileInfo // as first opened: a resumed read must find the same
	off      int64       // of the next byte to fetch
	buf      []byte
	pos      int
	failures int
	end      error
}

// open opens the file on c; on a resume, it checks that the file is the one
// first opened.
func (r *reader) open(c *conn) error {
	f, err := c.sftp.Open(r.s.path(r.key))
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if r.fi != nil && (fi.Size() != r.fi.Size() || !fi.ModTime().Equal(r.fi.ModTime())) {
		f.Close()
		return errChanged
	}
	r.c, r.f, r.fi = c, f, fi
	return nil
}

var errChanged = errors.New("the object was replaced while being read")

func (r *reader) Read(p []byte) (int, error) {
	for r.pos == len(r.buf) {
		if r.end != nil {
			return 0, r.end
		}
		if err := r.fill(); err != nil {
			r.end = err
			r.f.Close()
		}
	}
	n := copy(p, r.buf[r.pos:])
	r.pos += n
	return n, nil
}

// fill fetches the next chunk, resuming on a new connection when the
// current one breaks. It returns io.EOF at the end.
func (r *reader) fill() error {
	for {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		n, err := r.f.ReadAt(r.buf[:cap(r.buf)], r.off)
		r.buf, r.pos = r.buf[:n], 0
		r.off += int64(n)
		if n > 0 {
			r.failures = 0
			return nil
		}
		if err == nil || err == io.EOF {
			return io.EOF
		}
		if !broken(err) || r.failures >= attempts {
			return r.s.err("get", r.key, err)
		}
		if err := r.resume(err); err != nil {
			return err
		}
	}
}

// resume opens the file again on a new connection, after a short wait.
func (r *reader) resume(cause error) error {
	r.failures++
	r.f.Close()
	r.s.drop(r.c)
	wait := time.Duration(r.failures) * 100 * time.Millisecond
	r.s.log.Warn("storage download broke, resuming", "storage", r.s.String(), "key", r.key, "offset", r.off,
		"attempt", r.failures, "retry_in", wait.String(), "error", cause.Error())
	select {
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-time.After(wait):
	}
	c, err := r.s.client(r.ctx)
	if err != nil {
		return err
	}
	if err := r.open(c); err != nil {
		if errors.Is(err, errChanged) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("storage %s: get %s: resuming at byte %d: %w", r.s, r.key, r.off, errChanged)
		}
		return r.s.err("get", r.key, err)
	}
	return nil
}

// Close ends the read; the connection stays for other operations.
func (r *reader) Close() error {
	if r.end == nil {
		r.end = fs.ErrClosed
		return r.f.Close()
	}
	return nil
}
