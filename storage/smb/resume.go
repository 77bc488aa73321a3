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

// resumeAttempts is how many times a download reconnects after its
// connection breaks, with a growing pause between attempts.
const resumeAttempts = 5

// Open returns the object's content. If the connection breaks part way, the
// reader reconnects and reads on from where it stopped, provided the file
// still has the size and time it had when opened.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	r := &reader{s: s, ctx: ctx, key: key, path: s.path(key)}
	if err := r.reopen(); err != nil {
		r.drop()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, storage.NotExist(key)
		}
		return nil, r.fail(err)
	}
	r.size, r.mtime = r.st.Size(), r.st.ModTime()
	return r, nil
}

// reader reads a file through one connection at a time, in reads of up to
// bufSize, from its own offset.
type reader struct {
	s     *Storage
	ctx   context.Context
	key   string
	path  string
	c     *conn
	f     *smb2.File
	st    fs.FileInfo // of the file as last opened
	size  int64       // as first opened
	mtime time.Time
	off   int64  // of the end of what has been read from the server
	buf   []byte // bufSize, allocated at the first read
	data  []byte // what is read and not yet returned: a tail of buf
	err   error  // sticky
}

// reopen connects and opens the file.
func (r *reader) reopen() error {
	c, err := r.s.connect(r.ctx)
	if err != nil {
		return err
	}
	r.c = c
	if r.f, err = c.share.Open(r.path); err != nil {
		return err
	}
	if r.st, err = r.f.Stat(); err != nil {
		return err
	}
	if r.st.IsDir() {
		return fs.ErrNotExist
	}
	return nil
}

// drop closes the file and the connection, if open.
func (r *reader) drop() {
	if r.f != nil {
		_ = r.f.Close()
		r.f = nil
	}
	if r.c != nil {
		r.c.close()
		r.c = nil
	}
}

// fail turns an error into the reader's error, naming the storage once.
func (r *reader) fail(err error) error {
	var n *namedError
	if errors.As(err, &n) {
		return err
	}
	return r.s.err("read", r.key, err)
}

func (r *reader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.off >= r.size {
			return 0, io.EOF
		}
		if err := r.fill(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// fill reads the next piece of the file into buf, reconnecting when the
// connection breaks.
func (r *reader) fill() error {
	if r.buf == nil {
		r.buf = make([]byte, bufSize)
	}
	want := int(min(int64(len(r.buf)), r.size-r.off))
	for attempt := 0; ; attempt++ {
		err := r.ctx.Err()
		if err == nil && r.f == nil {
			err = r.resume()
		}
		if err == nil {
			var n int
			n, err = r.f.ReadAt(r.buf[:want], r.off)
			if n == want || n > 0 && errors.Is(err, io.EOF) {
				r.data = r.buf[:n]
				r.off += int64(n)
				return nil
			}
			if err == nil || errors.Is(err, io.EOF) {
				return fmt.Errorf("storage %s: read %s: the file shrank while it was read", r.s, r.key)
			}
		}
		if !retriable(r.ctx, err) || attempt+1 >= resumeAttempts {
			return r.fail(err)
		}
		r.drop()
		r.s.log.Warn("download broke; reconnecting to resume", "storage", r.s.String(), "key", r.key, "offset", r.off, "attempt", attempt+1, "err", err)
		select {
		case <-r.ctx.Done():
			return r.fail(r.ctx.Err())
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		}
	}
}

// resume reconnects and reopens the file, which must be the one first
// opened: a file replaced in between is not read on from the middle.
func (r *reader) resume() error {
	if err := r.reopen(); err != nil {
		return err
	}
	if r.st.Size() != r.size || !r.st.ModTime().Equal(r.mtime) {
		return errChanged
	}
	return nil
}

var errChanged = errors.New("the file changed while it was read")

// retriable tells a broken connection from an answer that another attempt
// would get again.
func retriable(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, errChanged) {
		return false
	}
	return ntStatus(err) == 0
}

func (r *reader) Close() error {
	r.drop()
	if r.err == nil {
		r.err = errors.New("read after Close")
	}
	return nil
}
