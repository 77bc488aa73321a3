package smb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/cloudsoda/go-smb2"

	"remora.dev/remora/storage"
)

// Open returns the object's content. If the connection breaks or stalls
// part way, the download reconnects and reads on from where it stopped,
// provided the file still has the size and time it had when opened
// (storage.Download).
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	return storage.Download{
		Storage: s, Key: key, Transfer: s.xfer, Log: s.log,
		OpenAt:    s.openAt(s.path(key)),
		Retryable: retriable,
		Err: func(err error) error {
			var n *namedError
			if errors.As(err, &n) {
				return err
			}
			return s.err("read", key, err)
		},
	}.Start(ctx)
}

// openAt connects, opens the file and reads it from off on that connection,
// whose requests end with ctx.
func (s *Storage) openAt(path string) func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
	return func(ctx context.Context, off int64, _ storage.Version) (io.ReadCloser, storage.Version, error) {
		c, err := s.get(ctx)
		if err != nil {
			return nil, storage.Version{}, err
		}
		b := &body{c: c, off: off}
		if b.f, err = c.share.Open(path); err != nil {
			c.release()
			return nil, storage.Version{}, err
		}
		st, err := b.f.Stat()
		if err == nil && st.IsDir() {
			err = fs.ErrNotExist
		}
		if err != nil {
			b.Close()
			return nil, storage.Version{}, err
		}
		b.size = st.Size()
		v := storage.Version{ID: fmt.Sprintf("%d bytes of %s", st.Size(), st.ModTime().UTC().Format(time.RFC3339Nano)), Size: st.Size()}
		return b, v, nil
	}
}

// body reads a file through one connection, in reads of up to bufSize.
type body struct {
	c      *conn
	f      *smb2.File
	size   int64
	off    int64  // of the end of what has been read from the server
	buf    []byte // bufSize, allocated at the first read
	data   []byte // what is read and not yet returned: a tail of buf
	failed bool   // the connection broke: close it without a goodbye
}

func (b *body) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		if b.off >= b.size {
			return 0, io.EOF
		}
		if b.buf == nil {
			b.buf = make([]byte, bufSize)
		}
		want := int(min(int64(len(b.buf)), b.size-b.off))
		n, err := b.f.ReadAt(b.buf[:want], b.off)
		b.data = b.buf[:n]
		b.off += int64(n)
		if n == 0 {
			if err == nil || errors.Is(err, io.EOF) {
				return 0, io.EOF // short: the file shrank, or the connection ended
			}
			b.failed = true
			return 0, err
		}
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *body) Close() error {
	if b.failed {
		b.abort()
		return nil
	}
	if b.f.Close() != nil {
		b.abort()
		return nil
	}
	b.c.release()
	return nil
}

// abort ends the connection at once, without waiting for the server.
func (b *body) abort() { b.c.kill() }

// retriable tells a broken connection from an answer that another attempt
// would get again.
func retriable(err error) bool {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return false
	}
	return ntStatus(err) == 0
}
