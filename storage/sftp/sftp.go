// Package sftp is the storage backend for sftp:// URLs: objects are files
// below a directory on an SSH server, reached over SFTP. Importing it
// registers the scheme with storage.Open. The URL names the login user, the
// server and an absolute path, which must exist (everything below it is
// created as needed):
//
//	sftp://user@host:port/path?password_env=NAME&key_env=NAME&key_file=/key&known_hosts=/known_hosts&known_hosts_env=NAME&stall=60s&retries=5
//
// Credentials never go in the URL. The password comes from
// REMORA_SFTP_PASSWORD (or the variable password_env= names); the private key
// (unencrypted, OpenSSH or PEM) from REMORA_SFTP_KEY, which holds the key
// itself, or REMORA_SFTP_KEY_FILE, which names a file (or key_env= and
// key_file=). With both a key and a password, the key is tried first.
//
// The server's host key is always checked against known_hosts lines: from
// REMORA_SFTP_KNOWN_HOSTS, which holds the lines themselves, or
// REMORA_SFTP_KNOWN_HOSTS_FILE, which names a file (or known_hosts_env= and
// known_hosts=), else ~/.ssh/known_hosts. An unknown host or a changed host
// key fails the connection; there is no option to skip the check.
//
// Put writes to a temporary name in the key's directory, fsyncs it (where
// the server offers fsync@openssh.com) and renames it into place with
// posix-rename@openssh.com, which replaces an existing object atomically;
// on a server without that extension, an existing object is removed just
// before the rename. A download that breaks, or moves no data for stall=,
// resumes at the offset where it stopped, on a new connection, up to
// retries= times in a row, if the file is still the same (size and time).
//
// Memory: a Put holds one 32 KiB packet being filled and the one being sent
// (up to 64 write requests are outstanding, their data on the wire, not in
// memory); an open object holds a 1 MiB read-ahead buffer, and each
// connection's SSH receive window is 2 MiB. Measured with 256 MiB objects,
// garbage included, the heap grew by about 2 MiB during a Put and 8 MiB
// during a download, whatever the object's size.
package sftp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	sftpc "github.com/pkg/sftp"

	"remora.dev/remora/storage"
)

func init() {
	storage.Register("sftp", open)
	storage.AcceptUser("sftp")
}

// tmpMarker is part of the name of every file that Put has not finished.
// List never shows such files; Sweep removes old ones.
const tmpMarker = ".remora-tmp-"

// attempts is how many times an operation that can be repeated (all but
// Put) is tried when the connection breaks.
const attempts = 3

// Storage keeps objects as files below a directory on an SFTP server.
type Storage struct {
	cfg     *config
	display string
	xfer    storage.Transfer
	log     *slog.Logger

	mu sync.Mutex
	c  *conn // nil until the first operation, and after the connection broke
}

// open returns the storage an sftp:// URL names. It contacts nothing: Check
// does.
func open(_ context.Context, u *url.URL, o storage.Options) (storage.Storage, error) {
	c, err := configure(u)
	display := url.URL{Scheme: "sftp", User: url.User(u.User.Username()), Host: u.Host, Path: path.Clean(u.Path)}
	if err != nil {
		if errors.Is(err, storage.ErrBadURL) {
			return nil, err
		}
		return nil, fmt.Errorf("storage %s: %w", display.String(), err)
	}
	s := &Storage{cfg: c, display: display.String(), xfer: c.xfer, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

func (s *Storage) String() string { return s.display }

func (s *Storage) path(key string) string { return path.Join(s.cfg.root, key) }

// do runs fn on a connection, again on a new one when the connection
// breaks, up to attempts times.
func (s *Storage) do(ctx context.Context, fn func(c *conn) error) error {
	var err error
	for i := 0; i < attempts; i++ {
		var c *conn
		if c, err = s.client(ctx); err != nil {
			return err
		}
		if err = fn(c); !broken(err) || ctx.Err() != nil {
			return err
		}
		s.drop(c)
		s.log.Warn("storage connection broke, reconnecting", "storage", s.String(), "attempt", i+1, "error", err.Error())
	}
	return err
}

// Check reports whether the server can be reached with the credentials and
// the directory exists. It creates nothing.
func (s *Storage) Check(ctx context.Context) error {
	err := s.do(ctx, func(c *conn) error { return s.checkRoot(c) })
	return s.err("check", "", err)
}

func (s *Storage) checkRoot(c *conn) error {
	st, err := c.sftp.Stat(s.cfg.root)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", s.cfg.root)
	}
	return nil
}

// err turns an SFTP error into one line that says what to fix. Errors that
// already name the storage (from dialing) pass unchanged.
func (s *Storage) err(op, key string, err error) error {
	if err == nil || strings.HasPrefix(err.Error(), "storage "+s.display+":") {
		return err
	}
	what := op
	if key != "" {
		what += " " + key
	}
	var st *sftpc.StatusError
	switch {
	case op == "check" && errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("storage %s: directory %s does not exist on %s: create it or fix the storage URL", s, s.cfg.root, s.cfg.addr)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("storage %s: %s: permission denied: %s may not do this in %s on the server", s, what, s.cfg.user, s.cfg.root)
	case errors.As(err, &st):
		return fmt.Errorf("storage %s: %s: the server says %q (SFTP status %d; a full disk shows as this too)", s, what, st.Error(), st.Code)
	case broken(err):
		return fmt.Errorf("storage %s: %s: the connection broke (%d attempts): %v", s, what, attempts, err)
	}
	return fmt.Errorf("storage %s: %s: %w", s, what, err)
}

func (s *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Object{}, err
	}
	var fi fs.FileInfo
	err := s.do(ctx, func(c *conn) (err error) {
		fi, err = c.sftp.Stat(s.path(key))
		return err
	})
	if errors.Is(err, fs.ErrNotExist) || err == nil && !fi.Mode().IsRegular() {
		return storage.Object{}, storage.NotExist(key)
	}
	if err != nil {
		return storage.Object{}, s.err("stat", key, err)
	}
	return storage.Object{Key: key, Size: fi.Size(), ModTime: fi.ModTime().UTC()}, nil
}

// Delete removes the file and then any directories it leaves empty, up to
// the root.
func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	err := s.do(ctx, func(c *conn) error {
		p := s.path(key)
		if err := c.sftp.Remove(p); errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		for dir := path.Dir(p); dir != s.cfg.root && strings.HasPrefix(dir, s.cfg.root+"/"); dir = path.Dir(dir) {
			if c.sftp.RemoveDirectory(dir) != nil { // not empty, or gone
				break
			}
		}
		return nil
	})
	return s.err("delete", key, err)
}

// tmpName is a fresh temporary name beside p.
func tmpName(p string) string {
	return path.Join(path.Dir(p), "."+path.Base(p)+tmpMarker+strings.ToLower(rand.Text()[:12]))
}

// Now is the server's time: the modification time of a file made for the
// purpose, which lists never show.
func (s *Storage) Now(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.do(ctx, func(c *conn) error {
		tmp := tmpName(path.Join(s.cfg.root, ".clock"))
		f, err := c.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return err
		}
		defer c.sftp.Remove(tmp)
		_, err = f.Write([]byte{0})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fi, err := c.sftp.Stat(tmp)
		if err != nil {
			return err
		}
		t = fi.ModTime().UTC()
		return nil
	})
	return t, s.err("read the clock", "", err)
}
