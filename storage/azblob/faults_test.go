package azblob_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
)

// TestResumeDownload: a download whose connection drops part way resumes
// with a range request from where it broke, and reads the whole blob once.
func TestResumeDownload(t *testing.T) {
	srv := testenv.StartAzurite(t)
	srv.SetEnv(t)
	srv.CreateContainer(t, "resume")
	proxy := testenv.StartFaultProxy(t, srv.Addr)
	var mu sync.Mutex
	var ranges []string
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/big") {
			return testenv.Pass
		}
		mu.Lock()
		defer mu.Unlock()
		ranges = append(ranges, r.Header.Get("x-ms-range")+r.Header.Get("Range"))
		if len(ranges) <= 2 {
			return testenv.CutResponse // the first request and the first resumption
		}
		return testenv.Pass
	})
	var logs bytes.Buffer
	ctx := context.Background()
	url := "azblob://devstoreaccount1/resume/p?endpoint=http://" + proxy.Endpoint + "/devstoreaccount1"
	s, err := storage.Open(ctx, url, storage.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	if _, err := s.Put(ctx, "big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ranges) != 3 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=262144-") || !strings.HasPrefix(ranges[2], "bytes=524288-") {
		t.Fatalf("requests' ranges: %q, want none, then from each break", ranges)
	}
	if n := strings.Count(logs.String(), "storage download broke, resuming"); n != 2 {
		t.Fatalf("logged %d resumptions, want 2:\n%s", n, logs.String())
	}
}

// TestStalledDownload: a download whose server stops sending part way is
// given up after the stall time and resumes from where it stopped, instead
// of waiting forever.
func TestStalledDownload(t *testing.T) {
	srv := testenv.StartAzurite(t)
	srv.SetEnv(t)
	srv.CreateContainer(t, "stall")
	proxy := testenv.StartFaultProxy(t, srv.Addr)
	var logs bytes.Buffer
	ctx := context.Background()
	url := "azblob://devstoreaccount1/stall/p?stall=1s&endpoint=http://" + proxy.Endpoint + "/devstoreaccount1"
	s, err := storage.Open(ctx, url, storage.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20+17)
	rand.Read(data)
	if _, err := s.Put(ctx, "big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var gets atomic.Int32
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/big") && gets.Add(1) == 1 {
			return testenv.StallResponse
		}
		return testenv.Pass
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
	if n := proxy.Injected()[testenv.StallResponse]; n != 1 || !strings.Contains(logs.String(), "storage download broke, resuming") {
		t.Fatalf("%d stalls injected; log:\n%s", n, logs.String())
	}
}
