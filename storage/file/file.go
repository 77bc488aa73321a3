// Package file is the storage backend for file:// URLs: objects are files below
// a local directory, written to a temporary name, fsynced and renamed into
// place. Importing it registers the scheme with storage.Open.
package file

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"remora.dev/remora/storage"
)

func init() { storage.Register("file", open) }

// tmpMarker is part of the name of every file that Put has not finished.
// List never shows such files.
const tmpMarker = ".remora-tmp-"

// Storage keeps objects as files below a local directory, which must exist.
type Storage struct {
	root string
}

// open returns the storage a file URL names: file:///path (or
// file://localhost/path), with no options.
func open(_ context.Context, u *url.URL, _ storage.Options) (storage.Storage, error) {
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("%w %q: a file URL has three slashes and an absolute path, e.g. file:///backups", storage.ErrBadURL, u.String())
	}
	if u.RawQuery != "" {
		return nil, fmt.Errorf("%w %q: file URLs take no options", storage.ErrBadURL, u.String())
	}
	p := filepath.Clean(u.Path)
	if !filepath.IsAbs(p) || u.Path == "" {
		return nil, fmt.Errorf("%w %q: want an absolute path, e.g. file:///backups", storage.ErrBadURL, u.String())
	}
	return New(p), nil
}

// New returns a storage rooted at the directory root.
func New(root string) *Storage { return &Storage{root: root} }

func (f *Storage) String() string { return "file://" + filepath.ToSlash(f.root) }

func (f *Storage) path(key string) string { return filepath.Join(f.root, filepath.FromSlash(key)) }

// Check reports whether the root directory exists and is a directory. It does
// not create it: a missing mount must not turn into a directory in the
// container's own filesystem.
func (f *Storage) Check(ctx context.Context) error {
	st, err := os.Stat(f.root)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage %s: directory %s does not exist: create it or mount the backup volume there", f, f.root)
	}
	if err != nil {
		return fmt.Errorf("storage %s: %w", f, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("storage %s: %s is not a directory", f, f.root)
	}
	return nil
}

// Put writes r to a temporary file in the key's directory, syncs it, renames it
// into place and syncs the directory, so a crash leaves either nothing or the
// whole object under key.
func (f *Storage) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := storage.CheckKey(key); err != nil {
		return 0, err
	}
	if err := f.Check(ctx); err != nil {
		return 0, err
	}
	dst := f.path(key)
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("storage %s: %w", f, err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(dst)+tmpMarker+hex.EncodeToString(rnd[:]))
	w, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, fmt.Errorf("storage %s: %w", f, err)
	}
	done := false
	defer func() {
		if !done {
			_ = w.Close()
			_ = os.Remove(tmp)
		}
	}()
	n, err := io.Copy(w, ctxReader{ctx, r})
	if err != nil {
		return n, f.writeErr(key, err)
	}
	if err := w.Sync(); err != nil {
		return n, f.writeErr(key, err)
	}
	if err := w.Close(); err != nil {
		return n, f.writeErr(key, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return n, f.writeErr(key, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return n, f.writeErr(key, err)
	}
	return n, nil
}

func (f *Storage) writeErr(key string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("storage %s: write %s: the volume is full (no space left on device): %w", f, key, err)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		// The path is ours; keep the message short.
		return fmt.Errorf("storage %s: write %s: %w", f, key, pe.Err)
	}
	return fmt.Errorf("storage %s: write %s: %w", f, key, err)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (f *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	r, err := os.Open(f.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, storage.NotExist(key)
	}
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", f, err)
	}
	return r, nil
}

func (f *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Object{}, err
	}
	st, err := os.Stat(f.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return storage.Object{}, storage.NotExist(key)
	}
	if err != nil {
		return storage.Object{}, fmt.Errorf("storage %s: %w", f, err)
	}
	if !st.Mode().IsRegular() {
		return storage.Object{}, storage.NotExist(key)
	}
	return storage.Object{Key: key, Size: st.Size(), ModTime: st.ModTime().UTC()}, nil
}

// Delete removes the file and then any directories it leaves empty, up to
// the root.
func (f *Storage) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	p := f.path(key)
	if err := os.Remove(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("storage %s: %w", f, err)
	}
	for dir := filepath.Dir(p); dir != f.root && strings.HasPrefix(dir, f.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil { // not empty, or gone
			break
		}
	}
	return nil
}

// List walks the directory below the root that holds prefix.
func (f *Storage) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	start := f.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = f.path(prefix[:i])
	}
	var objs []storage.Object
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() || strings.Contains(d.Name(), tmpMarker) {
			return nil
		}
		rel, err := filepath.Rel(f.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		objs = append(objs, storage.Object{Key: key, Size: info.Size(), ModTime: info.ModTime().UTC()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage %s: list %s: %w", f, prefix, err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	for _, o := range objs {
		if err := fn(o); err != nil {
			return err
		}
	}
	return nil
}

// ctxReader stops a copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Sweep removes temporary files of interrupted Puts below prefix's directory
// that were last written before olderThan.
func (f *Storage) Sweep(ctx context.Context, prefix string, olderThan time.Time) (int, error) {
	start := f.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = f.path(prefix[:i])
	}
	n := 0
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() || !strings.Contains(d.Name(), tmpMarker) {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().Before(olderThan) {
			if os.Remove(p) == nil {
				n++
			}
		}
		return nil
	})
	return n, err
}

// Now is the time by the clock that stamps the volume's files (on a network
// file system, the server's): the modification time of a file made for the
// purpose, which lists never show.
func (f *Storage) Now(ctx context.Context) (time.Time, error) {
	if err := f.Check(ctx); err != nil {
		return time.Time{}, err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(f.root, ".clock"+tmpMarker+hex.EncodeToString(rnd[:]))
	w, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return time.Time{}, fmt.Errorf("storage %s: read its clock: %w", f, err)
	}
	defer os.Remove(tmp)
	defer w.Close()
	if _, err := w.Write([]byte{0}); err != nil {
		return time.Time{}, f.writeErr(".clock", err)
	}
	fi, err := w.Stat()
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime().UTC(), nil
}
