package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
)

// countingReader counts what the handler reads of a request body.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// hugePod is a pod of about size bytes of JSON: a database pod with a long
// annotation.
func hugePod(size int) []byte {
	pod := postgresPod()
	pod.Annotations["filler"] = strings.Repeat("x", size)
	b, _ := json.Marshal(pod)
	return b
}

// A request above the 3 MiB cap is answered at once, having read no more
// than the cap: admitted unchanged with a warning when its UID can be read,
// else 413. Whether the client announced the length or not.
func TestOversizedRequest(t *testing.T) {
	const limit = 3 << 20
	huge := hugePod(6800 << 10)
	objectFirst, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{"object": json.RawMessage(huge), "uid": "late"}})
	for _, tc := range []struct {
		name    string
		body    []byte
		chunked bool
		uid     string // "": a 413 is expected
	}{
		{"review", reviewOf("big", huge), false, "big"},
		{"review, length unknown", reviewOf("big", huge), true, "big"},
		{"no review", bytes.Repeat([]byte(" "), 6800<<10), false, ""},
		{"no review, length unknown", bytes.Repeat([]byte(" "), 6800<<10), true, ""},
		{"uid after the object", objectFirst, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(goldenConfig(), nil, prometheus.NewRegistry())
			body := &countingReader{r: bytes.NewReader(tc.body)}
			req := httptest.NewRequest(http.MethodPost, "/mutate", body)
			req.Header.Set("Content-Type", "application/json")
			req.ContentLength = int64(len(tc.body))
			if tc.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if n := body.n.Load(); n > limit+1 {
				t.Errorf("read %d bytes of %d, want at most %d", n, len(tc.body), limit+1)
			}
			if got := testutil.ToFloat64(h.total.WithLabelValues("too_large")); got != 1 {
				t.Errorf("too_large = %v, want 1", got)
			}
			if tc.uid == "" {
				if rec.Code != http.StatusRequestEntityTooLarge {
					t.Errorf("status %d, want 413", rec.Code)
				}
				return
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || out.Response == nil {
				t.Fatalf("status %d, %v: %s", rec.Code, err, rec.Body.Bytes())
			}
			r := out.Response
			if !r.Allowed || string(r.UID) != tc.uid || r.Patch != nil || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "3 MiB") {
				t.Errorf("allowed %v, uid %q, %d bytes of patch, warnings %q", r.Allowed, r.UID, len(r.Patch), r.Warnings)
			}
		})
	}
}

// Through a real server, a client that sends 6.8 MiB gets its answer.
func TestOversizedRequestServed(t *testing.T) {
	srv := httptest.NewTLSServer(NewHandler(goldenConfig(), nil, prometheus.NewRegistry()))
	defer srv.Close()
	if r := postReview(t, srv, reviewOf("big", hugePod(6800<<10))); r != nil && (!r.Allowed || r.UID != "big" || r.Patch != nil || len(r.Warnings) != 1) {
		t.Errorf("allowed %v, uid %q, %d bytes of patch, warnings %q", r.Allowed, r.UID, len(r.Patch), r.Warnings)
	}
}

// N+1 concurrent admissions never have more than N in flight: the extra one
// waits for a slot, or, with no wait allowed, is admitted unchanged with a
// warning and counted as busy. A real server and the real handler; a hook
// holds the admissions inside their slots.
func TestAdmissionsInFlightBounded(t *testing.T) {
	const n = 2
	pod, _ := json.Marshal(postgresPod())
	for _, tc := range []struct {
		name string
		wait time.Duration
	}{
		{"the extra one waits", time.Hour}, // never reached: a slot frees first
		{"the extra one is admitted unchanged", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(goldenConfig(), nil, prometheus.NewRegistry())
			h.SetLimits(Limits{MaxInFlight: n, QueueWait: tc.wait})
			var in, most atomic.Int32
			entered, release := make(chan struct{}, n+1), make(chan struct{})
			h.inSlot = func() {
				cur := in.Add(1)
				for m := most.Load(); cur > m && !most.CompareAndSwap(m, cur); m = most.Load() {
				}
				entered <- struct{}{}
				<-release
				in.Add(-1)
			}
			srv := httptest.NewTLSServer(h)
			defer srv.Close()
			var once sync.Once
			releaseAll := func() { once.Do(func() { close(release) }) }
			defer releaseAll() // before srv.Close, which waits for the handlers
			answers := make(chan *admissionv1.AdmissionResponse, n+1)
			for i := range n + 1 {
				go func() { answers <- postReview(t, srv, reviewOf(fmt.Sprintf("u-%d", i), pod)) }()
			}
			for range n {
				<-entered
			}
			pending := n + 1 // answers to come once the slots are released
			if tc.wait == 0 {
				var r *admissionv1.AdmissionResponse
				select {
				case r = <-answers: // the others are held in their slots
				case <-entered:
					t.Fatalf("admission %d went in while %d held their slots", n+1, n)
				}
				if r != nil && (!r.Allowed || r.Patch != nil || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "busy")) {
					t.Errorf("the extra admission: allowed %v, %d bytes of patch, warnings %q", r.Allowed, len(r.Patch), r.Warnings)
				}
				pending--
			} else {
				for testutil.ToFloat64(h.waiting) != 1 {
					select {
					case <-entered:
						t.Fatalf("admission %d went in while %d held their slots", n+1, n)
					default:
						runtime.Gosched()
					}
				}
			}
			releaseAll()
			for range pending {
				if r := <-answers; r != nil && len(r.Patch) == 0 {
					t.Errorf("an admission with a slot was not injected: %q", r.Warnings)
				}
			}
			if m := most.Load(); m != n {
				t.Errorf("%d admissions in flight at most, want %d", m, n)
			}
			if busy, want := testutil.ToFloat64(h.total.WithLabelValues("busy")), float64(n+1-pending); busy != want {
				t.Errorf("busy = %v, want %v", busy, want)
			}
			if got := testutil.ToFloat64(h.inFlight); got != 0 {
				t.Errorf("in flight after all answers: %v", got)
			}
		})
	}
}
