package ftp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/jlaffaye/ftp"

	"remora.dev/remora/storage"
)

// entries lists a directory: MLSD where the server has it (exact times),
// else LIST -a, whose times are to the minute at best, and which without -a
// hides names that start with a dot on many servers.
func entries(c *conn, dir string) ([]*ftp.Entry, error) {
	if c.IsTimePreciseInList() {
		return c.List(dir)
	}
	return c.List("-a " + dir)
}

// walk calls visit for every file below the root whose key starts with
// prefix, descending only into directories that can hold such keys. rel is
// the directory to list, relative to the root ("" for the root). A directory
// that does not exist holds nothing.
func (s *Storage) walk(c *conn, rel, prefix string, visit func(key string, e *ftp.Entry) error) error {
	ents, err := entries(c, path.Join(s.root, rel))
	if code(err) == ftp.StatusFileUnavailable {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name == "." || e.Name == ".." || e.Name == "" || strings.Contains(e.Name, "/") {
			continue
		}
		key := path.Join(rel, e.Name)
		switch e.Type {
		case ftp.EntryTypeFolder:
			if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				if err := s.walk(c, key, prefix, visit); err != nil {
					return err
				}
			}
		case ftp.EntryTypeFile:
			if strings.HasPrefix(key, prefix) {
				if err := visit(key, e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// startDir is the directory, relative to the root, that holds every key
// starting with prefix.
func startDir(prefix string) string {
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		return prefix[:i]
	}
	return ""
}

// modTime is an entry's exact time: from MLSD as listed, else by MDTM (one
// round trip per file).
func modTime(c *conn, p string, e *ftp.Entry) (time.Time, error) {
	if c.IsTimePreciseInList() || !c.IsGetTimeSupported() {
		return e.Time.UTC(), nil
	}
	t, err := c.GetTime(p)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// List walks the subtree that holds prefix and calls fn in key order.
// Temporary files of unfinished Puts are not shown.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	c, err := s.get(ctx)
	if err != nil {
		return err
	}
	var objs []storage.Object
	err = s.walk(c, startDir(prefix), prefix, func(key string, e *ftp.Entry) error {
		if strings.Contains(path.Base(key), tmpMarker) {
			return nil
		}
		t, err := modTime(c, s.keyPath(key), e)
		if code(err) == ftp.StatusFileUnavailable {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		objs = append(objs, storage.Object{Key: key, Size: int64(e.Size), ModTime: t})
		return nil
	})
	c.release() // fn may take its time; the connection can serve others
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

func (s *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Object{}, err
	}
	c, err := s.get(ctx)
	if err != nil {
		return storage.Object{}, err
	}
	defer c.release()
	o, err := s.stat(c, key)
	if code(err) == ftp.StatusFileUnavailable || errors.Is(err, errNotFile) {
		return storage.Object{}, storage.NotExist(key)
	}
	if err != nil {
		return storage.Object{}, s.err("stat", key, err)
	}
	return o, nil
}

var errNotFile = errors.New("not a file")

// stat is a file's size and time: by MLST where the server has it, else by
// SIZE and MDTM.
func (s *Storage) stat(c *conn, key string) (storage.Object, error) {
	p := s.keyPath(key)
	if c.IsTimePreciseInList() {
		e, err := c.GetEntry(p)
		if err != nil {
			return storage.Object{}, err
		}
		if e.Type != ftp.EntryTypeFile {
			return storage.Object{}, errNotFile
		}
		return storage.Object{Key: key, Size: int64(e.Size), ModTime: e.Time.UTC()}, nil
	}
	size, err := c.FileSize(p)
	if err != nil {
		return storage.Object{}, err
	}
	if !c.IsGetTimeSupported() {
		return storage.Object{}, errors.New("the server has neither MLST nor MDTM to tell a file's time")
	}
	t, err := c.GetTime(p)
	if err != nil {
		return storage.Object{}, err
	}
	return storage.Object{Key: key, Size: size, ModTime: t.UTC()}, nil
}

// Delete removes the file, then the directories it leaves empty, up to the
// root. A missing file is no error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	c, err := s.get(ctx)
	if err != nil {
		return err
	}
	defer c.release()
	p := s.keyPath(key)
	if err := c.Delete(p); err != nil {
		if _, serr := c.FileSize(p); code(err) == ftp.StatusFileUnavailable && code(serr) == ftp.StatusFileUnavailable {
			return nil // missing (or a directory, which is no object either)
		}
		return s.err("delete", key, err)
	}
	for dir := path.Dir(p); s.below(dir); dir = path.Dir(dir) {
		if c.RemoveDir(dir) != nil { // not empty, or gone
			break
		}
	}
	return nil
}

// below reports whether dir is strictly below the root.
func (s *Storage) below(dir string) bool {
	if s.root == "/" {
		return dir != "/" && strings.HasPrefix(dir, "/")
	}
	return strings.HasPrefix(dir, s.root+"/")
}

// Sweep removes temporary files of interrupted Puts below prefix's
// directory that the server last wrote before olderThan (by its clock: see
// Now).
func (s *Storage) Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	c, err := s.get(ctx)
	if err != nil {
		return 0, err
	}
	defer c.release()
	var old []string
	err = s.walk(c, startDir(prefix), prefix, func(key string, e *ftp.Entry) error {
		if !strings.Contains(path.Base(key), tmpMarker) {
			return nil
		}
		t, err := modTime(c, s.keyPath(key), e)
		if err == nil && t.Before(olderThan) {
			old = append(old, key)
		}
		return nil
	})
	if err != nil {
		return 0, s.err("sweep", prefix, err)
	}
	n := 0
	for _, key := range old {
		if c.Delete(s.keyPath(key)) == nil {
			n++
		}
	}
	return n, nil
}

// Now is the server's clock: the time it stamps on a one-byte file made in
// the root for the purpose (and deleted), which lists never show.
func (s *Storage) Now(ctx context.Context) (time.Time, error) {
	c, err := s.get(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer c.release()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	p := path.Join(s.root, ".clock"+tmpMarker+hex.EncodeToString(rnd[:]))
	if err := c.Stor(p, strings.NewReader("0")); err != nil {
		return time.Time{}, s.err("read the clock: write", p, err)
	}
	defer func() { _ = c.Delete(p) }()
	if !c.IsGetTimeSupported() && !c.IsTimePreciseInList() {
		return time.Time{}, fmt.Errorf("storage %s: the server has neither MDTM nor MLST to read its clock with", s)
	}
	o, err := s.stat(c, path.Base(p))
	if err != nil {
		return time.Time{}, s.err("read the clock", "", err)
	}
	return o.ModTime, nil
}
