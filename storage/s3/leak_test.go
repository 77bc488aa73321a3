package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
)

// watchdogs returns the stacks of the running stall watchdogs.
func watchdogs() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "storage/s3.(*watchdog).run") {
			out = append(out, g)
		}
	}
	return out
}

// TestFailedDownloadsLeaveNoGoroutine: a download that fails, whether Open
// fails or the reader fails part way, leaves no stall watchdog running, even
// when the reader is never closed; so does one read to its end.
func TestFailedDownloadsLeaveNoGoroutine(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault testenv.Fault
		key   string
		n     int
	}{
		{"missing object", testenv.Pass, "missing", 50},
		{"503 answer", testenv.Answer503, "obj", 50},
		{"cut mid-stream", testenv.CutResponse, "obj", 50},
		{"stall mid-stream", testenv.StallResponse, "obj", 3},
		{"read to the end", testenv.Pass, "obj", 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, proxy := faultyS3(t, "&retries=0&timeout=200ms")
			ctx := context.Background()
			if _, err := st.Put(ctx, "obj", bytes.NewReader(make([]byte, 1<<20))); err != nil {
				t.Fatal(err)
			}
			proxy.Set(func(r *http.Request, n int) testenv.Fault {
				if r.Method == http.MethodGet {
					return tc.fault
				}
				return testenv.Pass
			})
			for range tc.n {
				r, err := st.Open(ctx, tc.key)
				if err == nil {
					_, err = io.Copy(io.Discard, r) // and never closed
				}
				if (err == nil) != (tc.name == "read to the end") {
					t.Fatalf("download: %v", err)
				}
				if err != nil && errors.Is(err, io.EOF) {
					t.Fatalf("a failed read ended in EOF: %v", err)
				}
			}
			// A stopped watchdog returns at once; wait for that.
			left := watchdogs()
			for deadline := time.Now().Add(10 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = watchdogs() {
				time.Sleep(10 * time.Millisecond)
			}
			if len(left) > 0 {
				t.Fatalf("%d downloads left %d watchdogs running:\n%s", tc.n, len(left), left[0])
			}
		})
	}
}
