package smb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cloudsoda/go-smb2"

	"remora.dev/remora/storage"
)

// tmpMarker is part of the name of every file that Put has not finished.
// List never shows such files.
const tmpMarker = ".remora-tmp-"

// bufSize is the size of the buffer a Put or a download holds: the most
// one SMB read or write carries.
const bufSize = 1 << 20

// path is where key is in the share, backslash-separated.
func (s *Storage) path(key string) string {
	p := strings.ReplaceAll(key, "/", `\`)
	if s.root == "" {
		return p
	}
	return s.root + `\` + p
}

// parent is the directory that holds p, "" for the share's root.
func parent(p string) string {
	i := strings.LastIndex(p, `\`)
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Check reports whether the server can be reached with the credentials, and
// the share and the directory exist.
func (s *Storage) Check(ctx context.Context) error {
	c, err := s.get(ctx)
	if err != nil {
		return err
	}
	defer c.release()
	return s.checkRoot(c)
}

// checkRoot reports whether the storage's directory exists. Put does not
// make it: a mistyped path must not turn into a new tree on the server.
func (s *Storage) checkRoot(c *conn) error {
	if s.root == "" {
		return nil
	}
	st, err := c.share.Stat(s.root)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage %s: directory %s does not exist in share %q: create it or fix the storage URL", s, strings.ReplaceAll(s.root, `\`, "/"), s.share)
	}
	if err != nil {
		return s.err("check directory", "", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("storage %s: %s in share %q is not a directory", s, strings.ReplaceAll(s.root, `\`, "/"), s.share)
	}
	return nil
}

// Put writes r to a temporary file in the key's directory, flushes it and
// renames it over key, so a failure leaves either nothing or the whole
// object under key.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := storage.CheckKey(key); err != nil {
		return 0, err
	}
	c, err := s.get(ctx)
	if err != nil {
		return 0, err
	}
	defer c.release()
	if err := s.checkRoot(c); err != nil {
		return 0, err
	}
	dst := s.path(key)
	if dir := parent(dst); dir != s.root {
		if err := c.share.MkdirAll(dir, 0o755); err != nil {
			return 0, s.err("write", key, err)
		}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := parent(dst) + `\.` + dst[strings.LastIndex(dst, `\`)+1:] + tmpMarker + hex.EncodeToString(rnd[:])
	tmp = strings.TrimPrefix(tmp, `\`)
	// From here the requests do not end with ctx: ctx kills the connection.
	stop := context.AfterFunc(ctx, c.kill)
	n, err := s.write(ctx, c.share.WithContext(context.WithoutCancel(ctx)), tmp, dst, r)
	stop()
	if err != nil {
		s.removeTmp(c, tmp)
		c.kill() // a failed Put is rare: do not reason about what it left
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if !isSMBErr(err) {
			return n, err // the reader's error, or the caller's cancel
		}
		return n, s.err("write", key, err)
	}
	return n, nil
}

// write copies r into tmp (several writes in flight: see copyTo), flushes
// and closes it, then renames it to dst. An error from r comes back
// unwrapped.
func (s *Storage) write(ctx context.Context, share *smb2.Share, tmp, dst string, r io.Reader) (int64, error) {
	f, err := share.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, smbErr{err}
	}
	n, err := copyTo(ctx, f, r)
	if err != nil {
		f.Close()
		return n, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return n, smbErr{err}
	}
	if err := f.Close(); err != nil {
		return n, smbErr{err}
	}
	if err := share.Rename(tmp, dst); err != nil {
		return n, smbErr{err}
	}
	return n, nil
}

// smbErr marks an error from the server or the connection, as opposed to
// one from the reader Put copies.
type smbErr struct{ err error }

func (e smbErr) Error() string { return e.err.Error() }
func (e smbErr) Unwrap() error { return e.err }

func isSMBErr(err error) bool {
	var e smbErr
	return errors.As(err, &e)
}

// removeTmp removes a temporary file after a failed Put, even when the
// Put's context has ended; what it cannot remove, Sweep will.
// A killed connection is replaced.
func (s *Storage) removeTmp(c *conn, tmp string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.killed.Load() {
		var err error
		if c, err = s.get(ctx); err != nil {
			s.log.Warn("could not remove the temporary file of a failed write; a later sweep will", "storage", s.String(), "file", strings.ReplaceAll(tmp, `\`, "/"), "err", err)
			return
		}
		defer c.release()
	}
	if err := c.share.WithContext(ctx).Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("could not remove the temporary file of a failed write; a later sweep will", "storage", s.String(), "file", strings.ReplaceAll(tmp, `\`, "/"), "err", err)
	}
}

func (s *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Object{}, err
	}
	c, err := s.get(ctx)
	if err != nil {
		return storage.Object{}, err
	}
	defer c.release()
	st, err := c.share.Stat(s.path(key))
	if errors.Is(err, fs.ErrNotExist) || err == nil && st.IsDir() {
		return storage.Object{}, storage.NotExist(key)
	}
	if err != nil {
		return storage.Object{}, s.err("stat", key, err)
	}
	return storage.Object{Key: key, Size: st.Size(), ModTime: st.ModTime().UTC()}, nil
}

// Delete removes the file and then any directories it leaves empty, up to
// the storage's directory.
func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	c, err := s.get(ctx)
	if err != nil {
		return err
	}
	defer c.release()
	p := s.path(key)
	if err := c.share.Remove(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return s.err("delete", key, err)
	}
	for dir := parent(p); dir != s.root && dir != ""; dir = parent(dir) {
		if c.share.Remove(dir) != nil { // not empty, or gone
			break
		}
	}
	return nil
}

// List walks the directory below the storage's that holds prefix.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	c, err := s.get(ctx)
	if err != nil {
		return err
	}
	defer c.release()
	if err := s.checkRoot(c); err != nil {
		return err
	}
	var objs []storage.Object
	err = s.walk(c, prefix, func(key string, fi fs.FileInfo) error {
		if !strings.Contains(fi.Name(), tmpMarker) && strings.HasPrefix(key, prefix) {
			objs = append(objs, storage.Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()})
		}
		return nil
	})
	if err != nil {
		return s.err("list", prefix, err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	for _, o := range objs {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

// walk calls fn for every file below the directory of prefix (its part up
// to the last slash), with the file's key. Directories that vanish while it
// walks are skipped.
func (s *Storage) walk(c *conn, prefix string, fn func(key string, fi fs.FileInfo) error) error {
	start := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = prefix[:i]
	}
	var visit func(rel string) error
	visit = func(rel string) error {
		dir := s.root
		if rel != "" {
			dir = s.path(rel)
		}
		ents, err := c.share.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			key := e.Name()
			if rel != "" {
				key = rel + "/" + key
			}
			if e.IsDir() {
				err = visit(key)
			} else if e.Mode().IsRegular() {
				err = fn(key, e)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return visit(start)
}

// Sweep removes temporary files of interrupted Puts below prefix's
// directory that were last written before olderThan.
func (s *Storage) Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	c, err := s.get(ctx)
	if err != nil {
		return 0, err
	}
	defer c.release()
	n := 0
	err = s.walk(c, prefix, func(key string, fi fs.FileInfo) error {
		if strings.Contains(fi.Name(), tmpMarker) && fi.ModTime().Before(olderThan) {
			if c.share.Remove(s.path(key)) == nil {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return n, s.err("sweep", prefix, err)
	}
	return n, nil
}

// Now is the time by the server's clock, which stamps the objects' ModTime:
// the modification time of a file made for the purpose, which lists never
// show.
func (s *Storage) Now(ctx context.Context) (time.Time, error) {
	c, err := s.get(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer c.release()
	if err := s.checkRoot(c); err != nil {
		return time.Time{}, err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := s.path(".clock" + tmpMarker + hex.EncodeToString(rnd[:]))
	f, err := c.share.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return time.Time{}, s.err("read its clock", "", err)
	}
	defer s.removeTmp(c, tmp)
	defer f.Close()
	if _, err := f.Write([]byte{0}); err != nil {
		return time.Time{}, s.err("read its clock", "", err)
	}
	st, err := f.Stat()
	if err != nil {
		return time.Time{}, s.err("read its clock", "", err)
	}
	return st.ModTime().UTC(), nil
}
