package smb_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/smb"
	"remora.dev/remora/storage/storagetest"
)

// newDir makes a directory for one test in the share and returns its name.
func newDir(t *testing.T, srv *testenv.SMB) string {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	if err := os.MkdirAll(filepath.Join(srv.Dir, "t", name), 0o755); err != nil {
		t.Fatal(err)
	}
	return "t/" + name
}

func open(t *testing.T, u string) storage.Storage {
	t.Helper()
	s, err := storage.Open(context.Background(), u, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSMB(t *testing.T) {
	srv := testenv.StartSMB(t)
	srv.SetEnv(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return open(t, srv.URL(srv.Share, newDir(t, srv)))
	})
}

// TestTemporaryFiles: a failed Put leaves no temporary file; one left by a
// killed process is hidden from List, kept by Sweep while fresh and removed
// once old.
func TestTemporaryFiles(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartSMB(t)
	srv.SetEnv(t)
	dir := newDir(t, srv)
	s := open(t, srv.URL(srv.Share, dir))
	if _, err := s.Put(ctx, "a/kept", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a/failed", io.MultiReader(strings.NewReader("part"), errReader{})); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if got := files(t, filepath.Join(srv.Dir, dir)); strings.Join(got, ",") != "a/kept" {
		t.Fatalf("after a failed Put the directory holds %v", got)
	}
	leftover := filepath.Join(srv.Dir, dir, "a", ".x.remora-tmp-abc") // as a killed Put leaves it
	if err := os.WriteFile(leftover, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, s, ""); strings.Join(got, ",") != "a/kept" {
		t.Fatalf("List shows %v", got)
	}
	sw := s.(storage.Sweeper)
	if n, err := sw.Sweep(ctx, "a/", time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep of fresh leftovers: %d, %v", n, err)
	}
	if n, err := sw.Sweep(ctx, "a/", time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Sweep of old leftovers: %d, %v", n, err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the leftover is still there: %v", err)
	}
	if _, err := s.Stat(ctx, "a/kept"); err != nil {
		t.Fatalf("Sweep removed an object: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read failed") }

// TestClock: the server's time is that of the files it writes, and its
// file leaves nothing behind.
func TestClock(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartSMB(t)
	srv.SetEnv(t)
	dir := newDir(t, srv)
	s := open(t, srv.URL(srv.Share, dir))
	before := time.Now().Add(-time.Minute)
	now, err := s.(storage.Clock).Now(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if now.Before(before) || now.After(time.Now().Add(time.Minute)) {
		t.Fatalf("Now = %v, local time %v", now, time.Now())
	}
	if got := files(t, filepath.Join(srv.Dir, dir)); len(got) != 0 {
		t.Fatalf("Now left %v", got)
	}
}

// TestPasswordSources: password_env= and password_file= name where the
// password is, instead of REMORA_SMB_PASSWORD.
func TestPasswordSources(t *testing.T) {
	srv := testenv.StartSMB(t)
	t.Setenv("REMORA_SMB_PASSWORD", "wrong")
	t.Setenv("OTHER_SMB_PASSWORD", srv.Password)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(srv.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"?password_env=OTHER_SMB_PASSWORD", "?password_file=" + pwFile} {
		s := open(t, srv.URL(srv.Share, "")+q)
		if err := s.Check(context.Background()); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// TestBadInput: each mistake gets one line that names the storage and says
// what is wrong, without the password, and nothing is stored.
func TestBadInput(t *testing.T) {
	srv := testenv.StartSMB(t)
	srv.SetEnv(t)
	for _, c := range []struct {
		name, url, env, want string
	}{
		{"wrong password", srv.URL(srv.Share, ""), "wrong-" + testenv.Canary, `login as "root" refused`},
		{"missing share", srv.URL("nosuchshare", ""), "", `share "nosuchshare" does not exist`},
		{"missing directory", srv.URL(srv.Share, "no/such/dir"), "", "directory no/such/dir does not exist"},
		{"no permission", srv.URL(srv.ReadOnly, ""), "", "permission denied"},
		{"unknown host", "smb://root@nosuchhost.invalid/backup", "", "cannot reach nosuchhost.invalid:445"},
		{"closed port", "smb://root@127.0.0.1:" + closedPort(t) + "/backup", "", "cannot reach 127.0.0.1"},
		{"no password", srv.URL(srv.Share, "") + "?password_env=NO_SUCH_VARIABLE", "", "no password: set NO_SUCH_VARIABLE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				t.Setenv("REMORA_SMB_PASSWORD", c.env)
			}
			err := putErr(c.url)
			if err == nil {
				t.Fatal("Put succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.Contains(msg, c.want) || !strings.HasPrefix(msg, "storage smb://") ||
				strings.Contains(msg, "\n") || strings.Contains(msg, testenv.Canary) {
				t.Fatalf("error %q: want one line naming the storage, saying %q, without the password", msg, c.want)
			}
			if got := append(files(t, srv.Dir), files(t, srv.ReadOnlyDir)...); len(got) != 0 {
				t.Fatalf("stored %v", got)
			}
		})
	}
}

// putErr opens the storage and puts an object, returning the first error.
func putErr(u string) error {
	s, err := storage.Open(context.Background(), u, storage.Options{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = s.Put(ctx, "a/b", strings.NewReader("data"))
	return err
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	l.Close()
	return port
}

func TestOpenBadURLs(t *testing.T) {
	t.Setenv("REMORA_SMB_PASSWORD", testenv.Canary)
	for _, u := range []string{
		"smb://host/share",                            // no user
		"smb://u:" + testenv.Canary + "@h/s",          // a password in the URL
		"smb://u@h",                                   // no share
		"smb://u@h/s/../x",                            // a bad directory
		"smb://u@h:99999/s",                           // a bad port
		"smb://u@h/s?timeout=1",                       // an unknown option
		"smb://u@h/s?password_env=A&password_file=/f", // two sources
	} {
		_, err := storage.Open(context.Background(), u, storage.Options{})
		if err == nil {
			t.Errorf("Open(%q) succeeded", u)
			continue
		}
		if strings.Contains(err.Error(), testenv.Canary) {
			t.Errorf("Open(%q): the error shows the password: %v", u, err)
		}
	}
	if _, err := storage.Open(context.Background(), "smb://u@h:1445/s/d/e?domain=W", storage.Options{}); err != nil {
		t.Errorf("good URL: %v", err)
	}
}

// TestResume: a download whose connection breaks or stalls part way
// reconnects and reads on from where it stopped, within the stall time.
func TestResume(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartSMB(t)
	srv.SetEnv(t)
	dir := newDir(t, srv)
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	if _, err := open(t, srv.URL(srv.Share, dir)).Put(ctx, "obj", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for _, fault := range []testenv.TCPFault{testenv.CutConn, testenv.StallConn} {
		t.Run(fault.String(), func(t *testing.T) {
			p := testenv.StartTCPProxy(t, srv.Addr)
			p.Arm(fault, 2<<20) // the first connection breaks after 2 MiB
			var logs bytes.Buffer
			u := strings.Replace(srv.URL(srv.Share, dir), srv.Addr, p.Addr, 1) + "?stall=1s"
			s, err := storage.Open(ctx, u, storage.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.Open(ctx, "obj")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := testenv.ReadAllOrHang(t, r)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, differ from the %d stored", len(got), len(data))
			}
			if p.Fired() != 1 || p.Accepted() < 2 || !strings.Contains(logs.String(), "storage download broke, resuming") {
				t.Fatalf("%d faults, %d connections, log %s: the test did not break the download", p.Fired(), p.Accepted(), logs.String())
			}
		})
	}
}

// files lists the regular files below dir, slash-separated and relative.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(t *testing.T, s storage.Storage, prefix string) []string {
	t.Helper()
	var out []string
	if err := s.List(context.Background(), prefix, func(o storage.Object) error {
		out = append(out, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWritesInFlight: a Put keeps several writes in flight, reading on
// while the server has not yet answered the first, and still stores every
// byte in order. The proxy holds the server's answers back from the second
// MiB on: a Put with one write in flight would read 2 MiB and wait.
func TestWritesInFlight(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartSMB(t)
	srv.SetEnv(t)
	dir := newDir(t, srv)
	p := testenv.StartTCPProxy(t, srv.Addr)
	s := open(t, strings.Replace(srv.URL(srv.Share, dir), srv.Addr, p.Addr, 1))
	data := make([]byte, 12<<20+5)
	rand.Read(data)
	r := &holdingReader{data: data, holdAt: 1 << 20, hold: p.Hold}
	done := make(chan error, 1)
	go func() { _, err := s.Put(ctx, "obj", r); done <- err }()
	testenv.WaitFor(t, "the Put to read 3 MiB while the server's answers are held", time.Minute,
		func() bool { return r.read() >= 3<<20 })
	p.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(srv.Dir, dir, "obj"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes (%v), differ from the %d put", len(got), err, len(data))
	}
}

// holdingReader reads data, calling hold once when a read starts at holdAt
// or beyond, and tells how much it has handed out.
type holdingReader struct {
	data   []byte
	holdAt int
	hold   func()
	mu     sync.Mutex
	off    int
}

func (r *holdingReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	if r.hold != nil && r.off >= r.holdAt {
		r.hold()
		r.hold = nil
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

func (r *holdingReader) read() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.off
}

// TestConnectionReuse: operations one after another share one connection
// (a connection costs smbd a new process, and the client a negotiation and
// a login); operations at the same time each have their own; connections
// that broke while idle are replaced, failing no operation.
func TestConnectionReuse(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartSMB(t)
	srv.SetEnv(t)
	dir := newDir(t, srv)
	p := testenv.StartTCPProxy(t, srv.Addr)
	s := open(t, strings.Replace(srv.URL(srv.Share, dir), srv.Addr, p.Addr, 1))
	ops := func() {
		t.Helper()
		if err := s.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, "a/obj", strings.NewReader("content")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "a/obj"); err != nil {
			t.Fatal(err)
		}
		if err := s.List(ctx, "", func(storage.Object) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, s, "a/obj"); got != "content" {
			t.Fatalf("read %q", got)
		}
		if _, err := s.(storage.Clock).Now(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ops()
	if n := p.Accepted(); n != 1 {
		t.Fatalf("%d connections for operations one after another, want 1", n)
	}

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
	if n := p.Accepted(); n != 2 {
		t.Fatalf("%d connections after two downloads at once, want 2", n)
	}

	// The next answer, on an idle connection, cuts it: twice, for both.
	p.Arm(testenv.CutConn, 0)
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	p.Arm(testenv.CutConn, 0)
	ops()
	if n, f := p.Accepted(), p.Fired(); n != 3 || f != 2 {
		t.Fatalf("%d connections after %d cut, want 3 after 2", n, f)
	}
}

func readAll(t *testing.T, s storage.Storage, key string) string {
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
