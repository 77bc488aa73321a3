package ftp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	"remora.dev/remora/storage/ftp"
	"remora.dev/remora/storage/storagetest"
)

// TestConformance runs the storage suite against vsftpd, over plain FTP and
// over explicit TLS.
func TestConformance(t *testing.T) {
	srv := testenv.StartFTP(t)
	srv.SetEnv(t)
	var n atomic.Int32
	for _, tc := range []struct {
		name string
		url  func(dir string) string
	}{{"ftp", srv.PlainURL}, {"ftps", srv.URL}} {
		t.Run(tc.name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) storage.Storage {
				dir := srv.MakeDir(t, fmt.Sprintf("backups%d", n.Add(1)))
				s, err := storage.Open(context.Background(), tc.url(dir), storage.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

// TestBadInput: each mistake an operator can make gets one line that names
// the storage and what to fix, never the password, and nothing is stored.
func TestBadInput(t *testing.T) {
	srv := testenv.StartFTP(t)
	plain := testenv.StartPlainFTP(t)
	ctx := context.Background()
	dir := srv.MakeDir(t, "backups")
	if err := os.Mkdir(filepath.Join(srv.Home, "readonly"), 0o755); err != nil { // root's: the user may not write
		t.Fatal(err)
	}
	plainDir := plain.MakeDir(t, "backups")
	for _, tc := range []struct {
		name, url, password string
		put                 string // the key of a Put where the mistake shows, not at Check
		want                string
	}{
		{"wrong password", srv.URL(dir), "wrong-" + testenv.Canary, "", "login as " + srv.User + " refused (530"},
		{"missing directory", srv.URL("/missing"), srv.Password, "", "directory /missing does not exist"},
		{"no permission to write", srv.URL("/readonly"), srv.Password, "b", "write b: refused (553"},
		{"no permission to make a directory", srv.URL("/readonly"), srv.Password, "a/b", "create directory /readonly/a: refused (550"},
		{"unknown host", "ftp://" + srv.User + "@no-such-host.invalid:21/backups", srv.Password, "", "cannot reach no-such-host.invalid:21"},
		{"refused port", "ftp://" + srv.User + "@" + fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) + "/backups", srv.Password, "", "cannot reach"},
		{"ftps against a plain server", strings.Replace(plain.PlainURL(plainDir), "ftp://", "ftps://", 1) + "?ca-file=" + srv.CAFile, plain.Password, "", "the server does not offer TLS"},
		{"untrusted certificate", strings.Replace(srv.PlainURL(dir), "ftp://", "ftps://", 1), srv.Password, "", "certificate is not trusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("REMORA_FTP_PASSWORD", tc.password)
			s, err := storage.Open(ctx, tc.url, storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Check(ctx)
			if tc.put != "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				_, err = s.Put(ctx, tc.put, strings.NewReader("data"))
			}
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "storage ftp") || strings.Contains(msg, "\n") ||
				strings.Contains(msg, testenv.Canary) {
				t.Fatalf("error %q: want one line starting with the storage, with %q, without the password", msg, tc.want)
			}
			for _, home := range []string{srv.Home, plain.Home} {
				if files := storedFiles(t, home); len(files) != 0 {
					t.Fatalf("stored: %v", files)
				}
			}
		})
	}
}

// TestBadURL: URLs that cannot work fail at Open, without the password.
func TestBadURL(t *testing.T) {
	t.Setenv("REMORA_FTP_PASSWORD", testenv.Canary)
	for _, u := range []string{
		"ftp://host/dir", "ftp://user:" + testenv.Canary + "@host/dir", "ftp://user@/dir", "ftp://user@host:99999/dir",
		"ftp://user@host/dir?nope=1", "ftp://user@host/dir?ca-file=/x.pem", "ftps://user@host/dir?ca-file=/nonexistent.pem",
		"ftp://user@host/dir?timeout=1ms", "ftp://user@host/dir?retries=99", "ftp://user@host/dir?password_env=NOT_SET_ANYWHERE",
		"ftp://user@host/dir?password_env=a-b", "ftp://user@host/dir?password_file=/nonexistent",
		"ftp://user@host/dir?password_env=X&password_file=/y",
	} {
		_, err := storage.Open(context.Background(), u, storage.Options{})
		if err == nil || strings.Contains(err.Error(), testenv.Canary) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%q) = %v, want one line without the password", u, err)
		}
	}
}

// TestPasswordOptions: password_env and password_file name where another
// destination's password is.
func TestPasswordOptions(t *testing.T) {
	srv := testenv.StartFTP(t)
	dir := srv.MakeDir(t, "backups")
	ctx := context.Background()
	t.Setenv("REMORA_FTP_PASSWORD", "wrong")
	t.Setenv("OTHER_FTP_PASSWORD", srv.Password)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(srv.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, opt := range []string{"&password_env=OTHER_FTP_PASSWORD", "&password_file=" + pwFile} {
		s, err := storage.Open(ctx, srv.URL(dir)+opt, storage.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check(ctx); err != nil {
			t.Errorf("%s: %v", opt, err)
		}
	}
}

// TestResume: a download whose data connection breaks part way resumes
// from where it stopped, and reads the whole file.
func TestResume(t *testing.T) {
	srv := testenv.StartFTP(t)
	srv.SetEnv(t)
	ctx := context.Background()
	s, err := storage.Open(ctx, srv.URL(srv.MakeDir(t, "backups")), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20)
	rand.Read(data)
	if _, err := s.Put(ctx, "x/big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var cuts atomic.Int32
	ftp.SetWrap(s, func(c net.Conn, isData bool) net.Conn {
		if isData && cuts.Add(1) == 1 {
			return &cutConn{Conn: c, left: 1 << 20}
		}
		return c
	})
	r, err := s.Open(ctx, "x/big")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	if cuts.Load() != 2 {
		t.Fatalf("%d data connections, want 2 (one cut, one resumed)", cuts.Load())
	}
}

// cutConn drops the connection after left bytes have been read.
type cutConn struct {
	net.Conn
	left int
}

func (c *cutConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		c.Conn.Close()
		return 0, errors.New("connection cut by the test")
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}

// TestStalledDownload: a download whose data connection stops delivering
// part way is given up after stall= and resumes on a new connection.
// (The test stalls the data connection from inside the client: passive data
// connections go to ports the server names, which a TCP proxy in front of
// the control connection never sees.)
func TestStalledDownload(t *testing.T) {
	srv := testenv.StartFTP(t)
	srv.SetEnv(t)
	ctx := context.Background()
	var logs bytes.Buffer
	s, err := storage.Open(ctx, srv.URL(srv.MakeDir(t, "backups"))+"&stall=1s", storage.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20)
	rand.Read(data)
	if _, err := s.Put(ctx, "big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	ftp.SetWrap(s, func(c net.Conn, isData bool) net.Conn {
		if isData && conns.Add(1) == 1 {
			return &stallingConn{Conn: c, left: 1 << 20, wake: make(chan struct{})}
		}
		return c
	})
	r, err := s.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := testenv.ReadAllOrHang(t, r)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	if conns.Load() != 2 || !strings.Contains(logs.String(), "storage download broke, resuming") {
		t.Fatalf("%d data connections, log %s: want one stalled, one resumed", conns.Load(), logs.String())
	}
}

// stallingConn delivers left bytes, then nothing: reads wait, as on a
// connection whose server stopped sending, until the deadline or Close.
type stallingConn struct {
	net.Conn
	left     int
	mu       sync.Mutex
	deadline time.Time
	wake     chan struct{} // closed when the deadline changes or the connection closes
	closed   bool
}

func (c *stallingConn) Read(p []byte) (int, error) {
	if c.left > 0 {
		if len(p) > c.left {
			p = p[:c.left]
		}
		n, err := c.Conn.Read(p)
		c.left -= n
		return n, err
	}
	for {
		c.mu.Lock()
		closed, d, wake := c.closed, c.deadline, c.wake
		c.mu.Unlock()
		var expired <-chan time.Time
		switch {
		case closed:
			return 0, net.ErrClosed
		case !d.IsZero() && !time.Now().Before(d):
			return 0, os.ErrDeadlineExceeded
		case !d.IsZero():
			expired = time.After(time.Until(d))
		}
		select {
		case <-wake:
		case <-expired:
		}
	}
}

func (c *stallingConn) changed(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
	close(c.wake)
	c.wake = make(chan struct{})
}

func (c *stallingConn) SetDeadline(t time.Time) error {
	c.changed(func() { c.deadline = t })
	return c.Conn.SetDeadline(t)
}

func (c *stallingConn) SetReadDeadline(t time.Time) error {
	c.changed(func() { c.deadline = t })
	return c.Conn.SetReadDeadline(t)
}

func (c *stallingConn) Close() error {
	c.changed(func() { c.closed = true })
	return c.Conn.Close()
}

// TestSweepAndClock: Sweep removes temporary files older than the cutoff,
// by the server's clock, and nothing else.
func TestSweepAndClock(t *testing.T) {
	srv := testenv.StartFTP(t)
	srv.SetEnv(t)
	ctx := context.Background()
	dir := srv.MakeDir(t, "backups")
	s, err := storage.Open(ctx, srv.URL(dir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a/kept", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(srv.Home, "backups", "a", "obj.remora-tmp-0123456789ab")
	if err := os.WriteFile(leftover, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	now, err := s.(storage.Clock).Now(ctx)
	if err != nil || now.IsZero() {
		t.Fatalf("Now: %v %v", now, err)
	}
	sw := s.(storage.Sweeper)
	if n, err := sw.Sweep(ctx, "a/", now.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep of a fresh leftover: %d, %v", n, err)
	}
	if n, err := sw.Sweep(ctx, "", now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Sweep of an old leftover: %d, %v", n, err)
	}
	if files := storedFiles(t, srv.Home); strings.Join(files, ",") != "backups/a/kept" {
		t.Fatalf("left: %v", files)
	}
}

// storedFiles lists the regular files below dir.
func storedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTLSUploadsEndCleanly: uploads over ftps arrive whole, one after
// another. The TLS 1.3 server's session tickets on the data connection,
// unread by an upload, made a plain close reset the connection, and vsftpd
// then failed most uploads with "426 Failure reading network stream".
func TestTLSUploadsEndCleanly(t *testing.T) {
	srv := testenv.StartFTP(t)
	srv.SetEnv(t)
	ctx := context.Background()
	s, err := storage.Open(ctx, srv.URL(srv.MakeDir(t, "backups")), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if _, err := s.Put(ctx, fmt.Sprintf("k%d", i), bytes.NewReader(make([]byte, 1<<20))); err != nil {
			t.Errorf("Put %d: %v", i, err)
		}
	}
}

// TestConnectionReuse: a Storage logs in once for operations one after
// another, opens a connection of its own for each operation in flight at
// the same time, replaces a connection the server dropped while it was
// idle, and closes idle connections after the idle time.
func TestConnectionReuse(t *testing.T) {
	srv := testenv.StartPlainFTP(t)
	srv.SetEnv(t)
	ctx := context.Background()
	s, err := storage.Open(ctx, srv.URL(srv.MakeDir(t, "backups")), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var controls []*closeSignal
	ftp.SetWrap(s, func(c net.Conn, isData bool) net.Conn {
		if isData {
			return c
		}
		mu.Lock()
		defer mu.Unlock()
		cs := &closeSignal{Conn: c, closed: make(chan struct{})}
		controls = append(controls, cs)
		return cs
	})
	logins := func() int { mu.Lock(); defer mu.Unlock(); return len(controls) }
	ops := func() {
		t.Helper()
		if _, err := s.Put(ctx, "a/obj", strings.NewReader("content")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "a/obj"); err != nil {
			t.Fatal(err)
		}
		if err := s.List(ctx, "", func(storage.Object) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if got := read(t, s, "a/obj"); got != "content" {
			t.Fatalf("read %q", got)
		}
		if _, err := s.(storage.Clock).Now(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ops()
	if n := logins(); n != 1 {
		t.Fatalf("%d logins for operations one after another, want 1", n)
	}

	// Two downloads at once: two connections, both kept for later.
	r1, err := s.Open(ctx, "a/obj")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Open(ctx, "a/obj")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []io.ReadCloser{r1, r2} {
		if b, err := io.ReadAll(r); err != nil || string(b) != "content" {
			t.Fatalf("read %q, %v", b, err)
		}
		r.Close()
	}
	ops()
	if n := logins(); n != 2 {
		t.Fatalf("%d logins after two downloads at once, want 2", n)
	}

	// The server drops the idle connections: the next operation logs in anew.
	mu.Lock()
	for _, c := range controls {
		c.Conn.Close()
	}
	mu.Unlock()
	ops()
	if n := logins(); n != 3 {
		t.Fatalf("%d logins after the server dropped the idle connections, want 3", n)
	}

	// Idle for the idle time: closed.
	ftp.SetIdleTime(s, time.Millisecond)
	ops()
	mu.Lock()
	last := controls[len(controls)-1]
	mu.Unlock()
	select {
	case <-last.closed:
	case <-time.After(time.Minute):
		t.Fatal("the idle connection is still open after a minute")
	}
}

func read(t *testing.T, s storage.Storage, key string) string {
	t.Helper()
	r, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// closeSignal is a connection that tells when it is closed.
type closeSignal struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *closeSignal) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
