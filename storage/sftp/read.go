package sftp

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"time"

	sftpc "github.com/pkg/sftp"

	"remora.dev/remora/storage"
)

// Open returns the object's content. When the connection breaks or stalls
// part way, the download reconnects and goes on from the offset where it
// stopped, as long as the file has the same size and time as when it was
// opened (storage.Download).
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	return storage.Download{
		Storage: s, Key: key, Transfer: s.xfer, Log: s.log,
		OpenAt:    s.openAt(key),
		Retryable: broken,
		Err:       func(err error) error { return s.err("get", key, err) },
	}.Start(ctx)
}

// openAt opens the file on the storage's connection, to read it from off.
// The connection is dropped if ctx ends while the file is open: SFTP
// requests take no context, and a stalled one ends only with its connection.
func (s *Storage) openAt(key string) func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
	return func(ctx context.Context, off int64, _ storage.Version) (io.ReadCloser, storage.Version, error) {
		b := &body{s: s, off: off}
		var fi fs.FileInfo
		err := s.do(ctx, func(c *conn) (err error) {
			b.c = c
			b.stop = context.AfterFunc(ctx, func() { s.drop(c) })
			defer func() {
				if err != nil {
					b.stop()
				}
			}()
			if b.f, err = c.sftp.Open(s.path(key)); err != nil {
				return err
			}
			if fi, err = b.f.Stat(); err == nil && !fi.Mode().IsRegular() {
				err = fs.ErrNotExist
			}
			if err != nil {
				b.f.Close()
			}
			return err
		})
		if err != nil {
			return nil, storage.Version{}, err
		}
		v := storage.Version{ID: fmt.Sprintf("%d bytes of %s", fi.Size(), fi.ModTime().UTC().Format(time.RFC3339Nano)), Size: fi.Size()}
		return b, v, nil
	}
}

// body reads a file ahead in chunks of readAhead bytes, each fetched by
// concurrent SFTP read requests.
type body struct {
	s      *Storage
	c      *conn
	f      *sftpc.File
	stop   func() bool // the watch that drops the connection when the request's context ends
	off    int64       // of the next byte to fetch
	buf    []byte
	pos    int
	failed bool // the connection broke: drop it
}

func (b *body) Read(p []byte) (int, error) {
	if b.pos == len(b.buf) {
		if b.buf == nil {
			b.buf = make([]byte, 0, readAhead)
		}
		n, err := b.f.ReadAt(b.buf[:cap(b.buf)], b.off)
		b.buf, b.pos = b.buf[:n], 0
		b.off += int64(n)
		if n == 0 {
			if err == nil || err == io.EOF {
				return 0, io.EOF
			}
			b.failed = broken(err)
			return 0, err
		}
	}
	n := copy(p, b.buf[b.pos:])
	b.pos += n
	return n, nil
}

// Close closes the file; the connection stays for other operations, unless
// it broke.
func (b *body) Close() error {
	b.stop()
	err := b.f.Close()
	if b.failed {
		b.s.drop(b.c)
	}
	return err
}
