package sftp

import (
	"context"
	"errors"
	"io"
	"os"
	"path"

	"remora.dev/remora/storage"
)

// Put writes r to a temporary file in the key's directory, fsyncs it and
// renames it into place, so a reader sees either the old object or the whole
// new one. A Put that fails removes its temporary file; one that cannot (the
// connection broke) leaves it for Sweep.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := storage.CheckKey(key); err != nil {
		return 0, err
	}
	// Everything before the upload can be repeated on a new connection.
	var c *conn
	dst := s.path(key)
	err := s.do(ctx, func(cc *conn) error {
		c = cc
		if err := s.checkRoot(c); err != nil {
			return err
		}
		return c.sftp.MkdirAll(path.Dir(dst))
	})
	if err != nil {
		if c != nil && errors.Is(err, os.ErrNotExist) {
			return 0, s.err("check", "", err)
		}
		return 0, s.err("put", key, err)
	}
	n, err := s.upload(ctx, c, dst, r)
	if err != nil {
		if broken(err) && ctx.Err() == nil && !errors.Is(err, errReader) {
			s.drop(c)
		}
		var re readErr
		if errors.As(err, &re) {
			return n, re.err // the caller's own error, as the contract wants
		}
		return n, s.err("put", key, err)
	}
	return n, nil
}

// errReader marks errors of the source reader.
var errReader = errors.New("reading the source failed")

// readErr is an error of the source reader (or of ctx), kept apart from the
// server's.
type readErr struct{ err error }

func (e readErr) Error() string   { return e.err.Error() }
func (e readErr) Unwrap() []error { return []error{e.err, errReader} }

// srcReader tags the errors of r, and stops when ctx ends.
type srcReader struct {
	ctx context.Context
	r   io.Reader
}

func (s srcReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, readErr{err}
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = readErr{err}
	}
	return n, err
}

// upload streams r into a temporary file and renames it to dst.
func (s *Storage) upload(ctx context.Context, c *conn, dst string, r io.Reader) (int64, error) {
	tmp := tmpName(dst)
	f, err := c.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return 0, err
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			c.sftp.Remove(tmp)
		}
	}()
	n, err := f.ReadFromWithConcurrency(srcReader{ctx, r}, maxInFlight)
	if err != nil {
		return n, err
	}
	if c.fsync {
		if err := f.Sync(); err != nil {
			return n, err
		}
	}
	if err := f.Close(); err != nil {
		return n, err
	}
	if err := s.rename(c, tmp, dst); err != nil {
		return n, err
	}
	done = true
	return n, nil
}

// rename moves tmp to dst, replacing dst: atomically with
// posix-rename@openssh.com; else (SFTP's own rename refuses an existing
// target) by removing dst first.
func (s *Storage) rename(c *conn, tmp, dst string) error {
	if c.posix {
		return c.sftp.PosixRename(tmp, dst)
	}
	if err := c.sftp.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return c.sftp.Rename(tmp, dst)
}
