package control

import (
	"remora.dev/remora/internal/testenv"

	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAgent runs one run that ends when its test says.
type fakeAgent struct {
	mu      sync.Mutex
	run     int
	running bool
	done    chan struct{}
}

func (f *fakeAgent) Status() Status { return Status{Namespace: "shop", Workload: "db-0"} }

func (f *fakeAgent) StartBackup() Started {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		return Started{Run: f.run}
	}
	f.run++
	f.running = true
	f.done = make(chan struct{})
	return Started{Run: f.run, Started: true}
}

func (f *fakeAgent) finish() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = false
	close(f.done)
}

func (f *fakeAgent) Event(n int) (Event, <-chan struct{}, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case n != f.run || n == 0:
		return Event{}, nil, false
	case f.running:
		return Event{Run: n, Progress: Progress{Object: "databases/app.dump.zst"}}, f.done, true
	}
	return Event{Run: n, Done: true, Result: &RunResult{Run: n, OK: true, ID: "20261130T000000Z"}}, f.done, true
}

func socketPath(t *testing.T) string {
	return filepath.Join(testenv.SocketDir(t), "agent.sock")
}

func TestBackupAndFollow(t *testing.T) {
	path := socketPath(t)
	a := &fakeAgent{}
	srv, err := Listen(path, a)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil || st.Workload != "db-0" {
		t.Fatalf("status %+v, %v", st, err)
	}
	s, err := c.Backup(ctx)
	if err != nil || !s.Started || s.Run != 1 {
		t.Fatalf("first backup: %+v, %v", s, err)
	}
	if s, err := c.Backup(ctx); err != nil || s.Started || s.Run != 1 {
		t.Fatalf("backup while one runs: %+v, %v (want run 1, not started)", s, err)
	}
	events := make(chan Event, 100)
	go func() {
		// The stream sends one event at once; the run ends after it.
		<-events
		a.finish()
	}()
	res, err := c.Follow(ctx, 1, func(ev Event) { events <- ev })
	if err != nil || res == nil || !res.OK || res.ID != "20261130T000000Z" {
		t.Fatalf("follow: %+v, %v", res, err)
	}
	// A run that has ended streams its result alone.
	res, err = c.Follow(ctx, 1, func(Event) {})
	if err != nil || !res.OK {
		t.Fatalf("follow after the end: %+v, %v", res, err)
	}
	if _, err := c.Follow(ctx, 7, func(Event) {}); err == nil || !strings.Contains(err.Error(), "no run 7") {
		t.Fatalf("follow of an unknown run: %v", err)
	}
}

func TestListenRefuses(t *testing.T) {
	t.Run("not a socket", func(t *testing.T) {
		path := socketPath(t)
		os.WriteFile(path, []byte("x"), 0o600)
		if _, err := Listen(path, &fakeAgent{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("another agent", func(t *testing.T) {
		path := socketPath(t)
		first, err := Listen(path, &fakeAgent{})
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if _, err := Listen(path, &fakeAgent{}); err == nil || !strings.Contains(err.Error(), "another agent") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := socketPath(t)
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close() // the file stays, nobody answers
		srv, err := Listen(path, &fakeAgent{})
		if err != nil {
			t.Fatalf("a stale socket was not replaced: %v", err)
		}
		srv.Close()
	})
}

func TestNoAgent(t *testing.T) {
	if _, err := Dial(filepath.Join(t.TempDir(), "none.sock")); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("dial of a missing socket: %v", err)
	}
	// A socket file nobody answers on: Dial succeeds, the first request
	// says no agent answers.
	path := socketPath(t)
	ln, _ := net.Listen("unix", path)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Status(ctx); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("status with no agent: %v", err)
	}
}

func TestLock(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "agent.sock")
	release, err := Lock(socket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(socket); !errors.Is(err, ErrBusy) {
		t.Fatalf("second lock: %v, want ErrBusy", err)
	}
	release()
	again, err := Lock(socket)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
	// Outside a pod (no socket directory) there is nothing to share.
	none, err := Lock("/nonexistent/remora/agent.sock")
	if err != nil {
		t.Fatalf("lock without its directory: %v", err)
	}
	none()
}
