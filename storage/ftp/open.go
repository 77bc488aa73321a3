package ftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jlaffaye/ftp"

	"remora.dev/remora/storage"
)

// Open returns the file's content. The download holds its own control
// connection until Close; when it breaks or stalls part way, it resumes from
// where it stopped (REST) on a new connection, if the file's size and time
// are the same, so a replaced file is never spliced in (storage.Download).
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	return storage.Download{
		Storage: s, Key: key, Transfer: s.xfer, Log: s.log,
		OpenAt:    s.openAt(key),
		Retryable: func(err error) bool { c := code(err); return c == 0 || c/100 == 4 }, // the network, or a transient reply
		NotFound:  func(err error) bool { return code(err) == ftp.StatusFileUnavailable || errors.Is(err, errNotFile) },
		Err: func(err error) error {
			var n *namedError
			if errors.As(err, &n) {
				return err
			}
			return s.err("read", key, err)
		},
	}.Start(ctx)
}

// openAt connects, checks the file (its size and time are its version) and
// asks for it from off. The connection ends with ctx.
func (s *Storage) openAt(key string) func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
	return func(ctx context.Context, off int64, _ storage.Version) (io.ReadCloser, storage.Version, error) {
		c, err := s.get(ctx)
		if err != nil {
			return nil, storage.Version{}, &namedError{err}
		}
		o, err := s.stat(c, key)
		if err != nil {
			c.release()
			return nil, storage.Version{}, err
		}
		resp, err := c.RetrFrom(s.keyPath(key), uint64(off))
		if err != nil {
			c.release()
			return nil, storage.Version{}, err
		}
		v := storage.Version{ID: fmt.Sprintf("%d bytes of %s", o.Size, o.ModTime.UTC().Format(time.RFC3339Nano)), Size: o.Size}
		return &body{c: c, resp: resp}, v, nil
	}
}

// namedError is an error that already names the storage and says what to
// fix (dial's).
type namedError struct{ error }

func (e *namedError) Unwrap() error { return e.error }

// body is a download's data connection, and its control connection.
type body struct {
	c    *conn
	resp *ftp.Response
	eof  bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.resp.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close closes the data connection and gives the control connection back
// for another operation; at the end of the file it first reads the server's
// 226. Closed before the end, the control connection is closed too: the
// server's reply to the aborted transfer is unread.
func (b *body) Close() error {
	if b.eof && b.resp.Close() == nil {
		b.c.release()
		return nil
	}
	b.c.markBroken()
	b.c.release()
	return nil
}
