package ftp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/jlaffaye/ftp"

	"remora.dev/remora/storage"
)

// Put uploads r to a temporary name in the key's directory, checks the size
// the server stored, and renames it over the key, so a reader never sees a
// partly written object under the key.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := storage.CheckKey(key); err != nil {
		return 0, err
	}
	c, err := s.get(ctx)
	if err != nil {
		return 0, err
	}
	defer c.release()
	if err := c.ChangeDir(s.root); err != nil {
		return 0, s.rootErr(err)
	}
	dst := s.keyPath(key)
	if err := s.mkdirs(c, path.Dir(dst)); err != nil {
		return 0, err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := dst + tmpMarker + hex.EncodeToString(rnd[:])
	cr := &countReader{ctx: ctx, r: r}
	err = c.Stor(tmp, cr)
	if err == nil && cr.err == nil {
		err = s.checkSize(c, tmp, cr.n)
	}
	if err == nil && cr.err == nil {
		err = s.rename(c, tmp, dst)
	}
	if err != nil || cr.err != nil {
		s.removeTemp(ctx, c, tmp)
		c.markBroken() // a rare path: not worth reasoning about what the server has left to say
	}
	switch {
	case cr.err != nil: // the reader's error, or the context's
		return cr.n, fmt.Errorf("storage %s: write %s: %w", s, key, cr.err)
	case err != nil && ctx.Err() != nil:
		return cr.n, s.err("write", key, ctx.Err())
	case err != nil:
		return cr.n, s.err("write", key, err)
	}
	return cr.n, nil
}

// mkdirs makes dir and its parents below the root as needed.
func (s *Storage) mkdirs(c *conn, dir string) error {
	if dir == s.root || c.ChangeDir(dir) == nil {
		return nil
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(dir, s.root), "/")
	p := s.root
	for _, el := range strings.Split(rel, "/") {
		p = path.Join(p, el)
		if err := c.MakeDir(p); err != nil && c.ChangeDir(p) != nil {
			return s.err("create directory", p, err)
		}
	}
	return nil
}

// checkSize checks that the server stored every byte sent: a data
// connection that closed early can look like a finished upload.
func (s *Storage) checkSize(c *conn, tmp string, want int64) error {
	got, err := c.FileSize(tmp)
	if code(err) == ftp.StatusNotImplemented || code(err) == ftp.StatusBadCommand {
		return nil // no SIZE: nothing to check with
	}
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("the server stored %d bytes of %d", got, want)
	}
	return nil
}

// rename moves tmp over dst. A server that will not rename onto an existing
// file gets it deleted first (see the package doc for what a crash in between
// leaves).
func (s *Storage) rename(c *conn, tmp, dst string) error {
	err := c.Rename(tmp, dst)
	if err == nil || (code(err) != ftp.StatusFileUnavailable && code(err) != ftp.StatusBadFileName) {
		return err
	}
	if _, serr := c.FileSize(dst); serr != nil {
		return err // nothing in the way: the refusal is about something else
	}
	s.log.Info("storage refuses to rename onto an existing file; deleting it first", "storage", s.String(), "file", dst)
	if derr := c.Delete(dst); derr != nil {
		return derr
	}
	return c.Rename(tmp, dst)
}

// removeTemp deletes a failed Put's temporary file, on a new connection if
// the operation's is gone (its context ended). What cannot be deleted is left
// to Sweep.
func (s *Storage) removeTemp(ctx context.Context, c *conn, tmp string) {
	if ctx.Err() == nil && c.Delete(tmp) == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.xfer.Stall)
	defer cancel()
	c2, err := s.get(ctx)
	if err != nil {
		s.log.Warn("storage: could not remove a temporary file; a later sweep will", "storage", s.String(), "file", tmp, "error", err.Error())
		return
	}
	defer c2.release()
	if err := c2.Delete(tmp); err != nil && code(err) != ftp.StatusFileUnavailable {
		s.log.Warn("storage: could not remove a temporary file; a later sweep will", "storage", s.String(), "file", tmp, "error", reply(err))
	}
}

// countReader counts what it reads, keeps the first error, and stops when
// the context ends.
type countReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
	err error
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if err := c.ctx.Err(); err != nil {
		c.err = err
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}
