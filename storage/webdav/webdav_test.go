package webdav_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	"remora.dev/remora/storage/storagetest"
	"remora.dev/remora/storage/webdav"
)

var collections atomic.Int64

// newCollection makes an empty collection on the server and returns its path.
func newCollection(t *testing.T, w *testenv.WebDAV) string {
	return w.MakeCollection(t, fmt.Sprintf("c%d", collections.Add(1)))
}

func open(t *testing.T, url string) storage.Storage {
	t.Helper()
	s, err := storage.Open(context.Background(), url, storage.Options{})
	if err != nil {
		t.Fatalf("Open %s: %v", url, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	w := testenv.StartWebDAV(t)
	w.SetEnv(t)
	t.Run("http", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage { return open(t, w.URL(newCollection(t, w))) })
	})
	t.Run("https", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage { return open(t, w.TLSURL(newCollection(t, w))) })
	})
}

// files lists the files below a directory of the server's disk.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestBadInput: each mistake gets one line that names the storage and what
// to fix, never the password, and stores nothing.
func TestBadInput(t *testing.T) {
	w := testenv.StartWebDAV(t)
	cases := []struct {
		name string
		url  func(t *testing.T) string
		env  map[string]string
		want string
	}{
		{"wrong password", func(t *testing.T) string { return w.URL(newCollection(t, w)) },
			map[string]string{"REMORA_WEBDAV_PASSWORD": "wrong-" + testenv.Canary}, "login refused (401 Unauthorized): check REMORA_WEBDAV_USER and REMORA_WEBDAV_PASSWORD"},
		{"wrong password, own variables", func(t *testing.T) string {
			return w.URL(newCollection(t, w)) + "?user_env=DAV2_USER&password_env=DAV2_PASS"
		}, map[string]string{"DAV2_USER": "alice", "DAV2_PASS": "x"}, "login refused (401 Unauthorized): check DAV2_USER and DAV2_PASS"},
		{"no credentials", func(t *testing.T) string { return w.URL(newCollection(t, w)) },
			map[string]string{"REMORA_WEBDAV_USER": "-", "REMORA_WEBDAV_PASSWORD": "-"}, "the server asks for a login (401 Unauthorized): set REMORA_WEBDAV_USER and REMORA_WEBDAV_PASSWORD"},
		{"missing collection", func(t *testing.T) string { return w.URL("/nope/deeper") },
			nil, "collection /nope/deeper/ does not exist: create it or fix the storage URL"},
		{"read-only collection", func(t *testing.T) string { return w.URL(w.MakeReadOnlyCollection(t, "ro")) },
			nil, "permission denied (403 Forbidden)"},
		{"unknown host", func(t *testing.T) string { return "webdav://no-such-host.invalid:8080/backups" },
			nil, "cannot reach no-such-host.invalid:8080"},
		{"untrusted certificate", func(t *testing.T) string { return "webdavs://" + w.TLSAddr + newCollection(t, w) },
			nil, "the server's certificate is not trusted (x509: certificate signed by unknown authority): add ca-file=PATH"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.SetEnv(t)
			for k, v := range c.env {
				if v == "-" {
					os.Unsetenv(k) // restored by SetEnv's cleanup
					continue
				}
				t.Setenv(k, v)
			}
			before := files(t, w.Dir)
			s := open(t, c.url(t))
			checkErr := s.Check(context.Background())
			_, putErr := s.Put(context.Background(), "ns/app/postgres/1/manifest.json", strings.NewReader("{}"))
			{
				err := putErr
				if err == nil {
					t.Fatal("Put succeeded")
				}
				msg := err.Error()
				t.Log(msg)
				if !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "storage webdav") {
					t.Errorf("error %q, want one line with %q", msg, c.want)
				}
				if strings.Contains(msg, testenv.Canary) || strings.Contains(msg, "@") {
					t.Errorf("error shows a credential: %q", msg)
				}
			}
			if c.name != "read-only collection" && checkErr == nil {
				t.Errorf("Check passed")
			}
			if after := files(t, w.Dir); len(after) != len(before) {
				t.Errorf("files on the server: %v, before %v", after, before)
			}
		})
	}
}

// TestBadURL: malformed URLs and options fail at Open, naming the problem.
func TestBadURL(t *testing.T) {
	for url, want := range map[string]string{
		"webdav:///path":                           "no host",
		"webdav://h/a/../b":                        "invalid path",
		"webdav://h/p?nope=1":                      `unknown option "nope"`,
		"webdav://h/p?password_env=A-B":            "want the name of an environment variable",
		"webdav://h/p?timeout=1ns":                 "timeout=",
		"webdavs://h/p?ca-file=/does/not/exist":    "ca-file",
		"webdav://user:" + testenv.Canary + "@h/p": "credentials do not belong in the URL",
	} {
		_, err := storage.Open(context.Background(), url, storage.Options{})
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), testenv.Canary) {
			t.Errorf("Open %s: %v, want %q", storage.RedactURL(url), err, want)
		}
	}
	t.Setenv("REMORA_WEBDAV_USER", "alice")
	t.Setenv("REMORA_WEBDAV_PASSWORD", "")
	os.Unsetenv("REMORA_WEBDAV_PASSWORD")
	if _, err := storage.Open(context.Background(), "webdav://h/p", storage.Options{}); err == nil ||
		!strings.Contains(err.Error(), "REMORA_WEBDAV_USER is set but REMORA_WEBDAV_PASSWORD is missing") {
		t.Errorf("user without password: %v", err)
	}
}

// TestResume: a download cut part way resumes where it broke and returns the
// whole object.
func TestResume(t *testing.T) {
	defer webdav.SetBackoffUnit(time.Millisecond)()
	w := testenv.StartWebDAV(t)
	w.SetEnv(t)
	coll := newCollection(t, w)
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	if _, err := open(t, w.URL(coll)).Put(context.Background(), "big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartFaultProxy(t, w.Addr)
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		if r.Method == http.MethodGet && r.Header.Get("Range") == "" {
			return testenv.CutResponse
		}
		return testenv.Pass
	})
	s := open(t, "webdav://"+proxy.Endpoint+coll)
	r, err := s.Open(context.Background(), "big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, differ from the %d written", len(got), len(data))
	}
	if n := proxy.Injected()[testenv.CutResponse]; n != 1 {
		t.Fatalf("%d cuts injected, want 1", n)
	}
}

// TestSweepAndClock: Sweep removes old temporary files and nothing else;
// Now is the server's time.
func TestSweepAndClock(t *testing.T) {
	w := testenv.StartWebDAV(t)
	w.SetEnv(t)
	coll := newCollection(t, w)
	s := open(t, w.URL(coll))
	ctx := context.Background()
	if _, err := s.Put(ctx, "a/b/kept", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(w.Dir, coll, "a", "b")
	old, fresh := filepath.Join(dir, ".x.remora-tmp-old"), filepath.Join(dir, ".y.remora-tmp-new")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(old, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	now, err := s.(storage.Clock).Now(ctx)
	if err != nil || now.IsZero() {
		t.Fatalf("Now: %v %v", now, err)
	}
	n, err := s.(storage.Sweeper).Sweep(ctx, "a/", now.Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("Sweep: removed %d, %v; want 1", n, err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("old temporary file still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
	var keys []string
	s.List(ctx, "", func(o storage.Object) error { keys = append(keys, o.Key); return nil })
	if strings.Join(keys, ",") != "a/b/kept" {
		t.Errorf("List: %v", keys)
	}
}

// TestPutStreams: a Put holds no copy of the object: what it allocates does
// not grow with the object's size.
func TestPutStreams(t *testing.T) {
	w := testenv.StartWebDAV(t)
	w.SetEnv(t)
	s := open(t, w.URL(newCollection(t, w)))
	ctx := context.Background()
	const size = 256 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := s.Put(ctx, "big", io.LimitReader(zeros{}, size))
	runtime.ReadMemStats(&after)
	if err != nil || n != size {
		t.Fatalf("Put: %d, %v", n, err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a Put of %d MiB allocated %d KiB in all", size>>20, alloc>>10)
	if alloc > size/16 {
		t.Errorf("a Put of %d MiB allocated %d MiB: the object is being buffered", size>>20, alloc>>20)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestRequestsRideOutFaults: MKCOL, MOVE, PROPFIND and DELETE that meet a
// dropped connection, a 5xx answer or a server that never answers are sent
// again; a PUT, whose streamed body cannot be sent again, fails the Put
// cleanly, leaving nothing under the key.
func TestRequestsRideOutFaults(t *testing.T) {
	defer webdav.SetBackoffUnit(time.Millisecond)()
	w := testenv.StartWebDAV(t)
	w.SetEnv(t)
	coll := newCollection(t, w)
	proxy := testenv.StartFaultProxy(t, w.Addr)
	var mu sync.Mutex
	seen := map[string]int{}
	kinds := []testenv.Fault{testenv.Answer503, testenv.CutRequest, testenv.StallBefore, testenv.Answer500}
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		mu.Lock()
		defer mu.Unlock()
		id := r.Method + " " + r.URL.Path + " " + r.Header.Get("Depth")
		seen[id]++
		if r.Method != http.MethodPut && r.Method != http.MethodGet && seen[id] == 1 {
			return kinds[len(seen)%len(kinds)]
		}
		return testenv.Pass
	})
	s := open(t, "webdav://"+proxy.Endpoint+coll+"?stall=1s")
	ctx := context.Background()
	if _, err := s.Put(ctx, "a/b/obj", strings.NewReader("content")); err != nil {
		t.Fatalf("Put through faults: %v (injected %v)", err, proxy.Injected())
	}
	if o, err := s.Stat(ctx, "a/b/obj"); err != nil || o.Size != 7 {
		t.Fatalf("Stat through faults: %+v, %v", o, err)
	}
	var keys []string
	if err := s.List(ctx, "", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil || strings.Join(keys, ",") != "a/b/obj" {
		t.Fatalf("List through faults: %v, %v", keys, err)
	}
	if err := s.Delete(ctx, "a/b/obj"); err != nil {
		t.Fatalf("Delete through faults: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.Dir, coll, "a", "b", "obj")); !os.IsNotExist(err) {
		t.Fatalf("the object is still there: %v", err)
	}
	inj := proxy.Injected()
	if inj[testenv.Answer503] == 0 || inj[testenv.CutRequest] == 0 || inj[testenv.StallBefore] == 0 {
		t.Fatalf("injected %v: want each kind of fault", inj)
	}

	// A PUT that breaks is not sent again: the Put fails, and neither the
	// key nor a temporary file is left.
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		if r.Method == http.MethodPut {
			return testenv.CutRequest
		}
		return testenv.Pass
	})
	if _, err := s.Put(ctx, "a/b/cut", bytes.NewReader(make([]byte, 1<<20))); err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Put with a broken PUT: %v, want one line", err)
	}
	if got := files(t, filepath.Join(w.Dir, coll)); len(got) != 0 {
		t.Fatalf("a failed Put left %v", got)
	}
}
