package sftp

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"remora.dev/remora/storage"
)

// walk calls fn for every regular file below the directory that holds
// prefix, with its key. A missing directory holds nothing.
func (s *Storage) walk(c *conn, prefix string, fn func(key string, fi fs.FileInfo) error) error {
	start := s.cfg.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = s.path(prefix[:i])
	}
	w := c.sftp.Walk(start)
	for w.Step() {
		if err := w.Err(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		if !w.Stat().Mode().IsRegular() {
			continue
		}
		key := strings.TrimPrefix(w.Path(), s.cfg.root+"/")
		if s.cfg.root == "/" {
			key = strings.TrimPrefix(w.Path(), "/")
		}
		if err := fn(key, w.Stat()); err != nil {
			return err
		}
	}
	return nil
}

// List walks the directory below the root that holds prefix.
func (s *Storage) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	var objs []storage.Object
	err := s.do(ctx, func(c *conn) error {
		objs = objs[:0]
		return s.walk(c, prefix, func(key string, fi fs.FileInfo) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if strings.HasPrefix(key, prefix) && !strings.Contains(path.Base(key), tmpMarker) {
				objs = append(objs, storage.Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()})
			}
			return nil
		})
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

// Sweep removes temporary files of interrupted Puts below prefix's directory
// that were last written before olderThan (by the server's clock: see Now).
func (s *Storage) Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	n := 0
	err := s.do(ctx, func(c *conn) error {
		return s.walk(c, prefix, func(key string, fi fs.FileInfo) error {
			if !strings.Contains(path.Base(key), tmpMarker) || !fi.ModTime().Before(olderThan) {
				return nil
			}
			if c.sftp.Remove(s.path(key)) == nil {
				n++
			}
			return nil
		})
	})
	return n, s.err("sweep", prefix, err)
}
