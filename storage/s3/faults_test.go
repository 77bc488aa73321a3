package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	"remora.dev/remora/storage/s3"
)

// faultyS3 is a bucket reached through a fault-injecting proxy, with a 1 s
// stall timeout and short waits between attempts.
func faultyS3(t *testing.T, options string) (storage.Storage, *testenv.FaultProxy) {
	t.Helper()
	t.Cleanup(s3.SetBackoffUnit(20 * time.Millisecond))
	srv := testenv.StartS3(t)
	srv.MakeBucket(t, "faults")
	srv.SetEnv(t)
	proxy := testenv.StartFaultProxy(t, srv.Endpoint)
	u := fmt.Sprintf("s3://faults/p?endpoint=%s&region=%s&insecure=true&part-size=5MiB&timeout=1s%s", proxy.Endpoint, srv.Region, options)
	st, err := storage.Open(context.Background(), u, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st, proxy
}

// firstAttempts injects kinds in turn into the first attempt of every
// distinct request (and into the second attempt of every third one), so each
// operation meets faults and still succeeds within its retries.
func firstAttempts(kinds ...testenv.Fault) func(r *http.Request, n int) testenv.Fault {
	var mu sync.Mutex
	seen := map[string]int{}
	i := 0
	return func(r *http.Request, n int) testenv.Fault {
		mu.Lock()
		defer mu.Unlock()
		id := r.Method + " " + r.URL.Path + "?" + r.URL.Query().Get("partNumber") + r.Header.Get("Range")
		seen[id]++
		if seen[id] == 1 || seen[id] == 2 && len(seen)%3 == 0 {
			i++
			return kinds[i%len(kinds)]
		}
		return testenv.Pass
	}
}

func TestS3RidesOutTransientFaults(t *testing.T) {
	st, proxy := faultyS3(t, "")
	ctx := context.Background()
	data := make([]byte, 23<<20+12345) // five parts and a bit
	rand.Read(data)
	want := sha256.Sum256(data)

	proxy.Set(firstAttempts(testenv.Answer503, testenv.CutRequest, testenv.Answer500, testenv.StallBefore))
	start := time.Now()
	n, err := st.Put(ctx, "big/object", bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Put through faults: %d, %v (injected %v)", n, err, proxy.Injected())
	}
	if _, err := st.Put(ctx, "small", strings.NewReader("small object")); err != nil {
		t.Fatalf("small Put through faults: %v", err)
	}
	if o, err := st.Stat(ctx, "big/object"); err != nil || o.Size != int64(len(data)) {
		t.Fatalf("Stat through faults: %+v %v", o, err)
	}
	var keys []string
	if err := st.List(ctx, "", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil || len(keys) != 2 {
		t.Fatalf("List through faults: %v %v", keys, err)
	}
	t.Logf("writes: %v injected, %s", proxy.Injected(), time.Since(start).Round(time.Millisecond))

	// Downloads: the first answer of each GET breaks or stalls after 256 KiB;
	// the reader resumes where it stopped.
	before := proxy.Total()
	proxy.Set(firstAttempts(testenv.CutResponse, testenv.StallResponse, testenv.Answer503))
	r, err := st.Open(ctx, "big/object")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatalf("reading through faults: %v (injected %v)", err, proxy.Injected())
	}
	r.Close()
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatal("the object read back through faults differs")
	}
	if proxy.Total() == before {
		t.Fatal("no fault was injected into the download")
	}
	t.Logf("total: %d faults injected %v; every operation completed", proxy.Total(), proxy.Injected())
}

func TestS3LastingFaultFails(t *testing.T) {
	for _, tc := range []struct {
		fault testenv.Fault
		want  string
	}{
		{testenv.Answer503, "SlowDown"},
		{testenv.StallBefore, "no data moved for 1s (3 attempts)"},
		{testenv.CutRequest, "put big"},
	} {
		t.Run(tc.fault.String(), func(t *testing.T) {
			st, proxy := faultyS3(t, "&retries=2")
			ctx := context.Background()
			// Every part upload fails; starting and aborting the upload work.
			proxy.Set(func(r *http.Request, n int) testenv.Fault {
				if r.Method == http.MethodPut {
					return tc.fault
				}
				return testenv.Pass
			})
			start := time.Now()
			_, err := st.Put(ctx, "big", bytes.NewReader(make([]byte, 11<<20)))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Put with a lasting %s: %v, want one line with %q", tc.fault, err, tc.want)
			}
			t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
			proxy.Set(nil)
			if _, err := st.Stat(ctx, "big"); err == nil {
				t.Error("a failed Put left an object")
			}
			if n, err := st.(storage.Sweeper).Sweep(ctx, "", time.Now().Add(time.Hour)); err != nil || n != 0 {
				t.Errorf("a failed Put left %d unfinished uploads (%v)", n, err)
			}
		})
	}
}

// TestS3SlowListingFails: a server that sends its listings at one byte a
// second (the headers at once, so no response-header timeout fires) fails a
// listing after the stall timeout and the retries, with an error naming the
// stall, instead of keeping it forever; so does the sweep's listing of
// unfinished uploads.
func TestS3SlowListingFails(t *testing.T) {
	st, proxy := faultyS3(t, "&retries=2")
	ctx := context.Background()
	for _, k := range []string{"a/1", "a/2"} {
		if _, err := st.Put(ctx, k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		if q := r.URL.Query(); r.Method == http.MethodGet && (q.Has("list-type") || q.Has("uploads")) {
			return testenv.Trickle
		}
		return testenv.Pass
	})
	var keys []string
	err := st.List(ctx, "a/", func(o storage.Object) error { keys = append(keys, o.Key); return nil })
	want := "list a/: a listing page did not arrive within 1s (3 attempts)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("List from a trickling server: %v (keys %q), want an error with %q", err, keys, want)
	}
	if n := proxy.Injected()[testenv.Trickle]; n != 3 {
		t.Errorf("%d listing requests trickled, want 3", n)
	}
	_, err = st.(storage.Sweeper).Sweep(ctx, "", time.Now())
	if want := "list uploads: a listing page did not arrive within 1s"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Sweep on a trickling server: %v, want an error with %q", err, want)
	}
	proxy.Set(nil)
	keys = nil
	if err := st.List(ctx, "a/", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil || len(keys) != 2 {
		t.Fatalf("List once the server is well: %q, %v", keys, err)
	}
}
