package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
)

// FuzzAdmission posts arbitrary bodies to the admission handler: it never
// panics, and answers either an error status or an AdmissionReview response
// with the request's UID.
func FuzzAdmission(f *testing.F) {
	pod, _ := json.Marshal(postgresPod())
	review := func(obj []byte) []byte {
		b, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
			"request": map[string]any{"uid": "u-1", "kind": map[string]any{"kind": "Pod", "version": "v1"}, "operation": "CREATE",
				"namespace": "shop", "object": json.RawMessage(obj)}})
		return b
	}
	f.Add(review(pod))
	f.Add(review([]byte(`{"metadata":{"annotations":{"remora.dev/schedule":"bad"}},"spec":{"containers":[{"name":"p","image":"postgres"}]}}`)))
	f.Add(review([]byte(`{"spec":{"containers":null}}`)))
	f.Add([]byte(`{"request":null}`))
	f.Add([]byte(`not json`))
	h := NewHandler(goldenConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return
		}
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("200 without an AdmissionReview response: %v\n%s", err, rec.Body.String())
		}
		var in admissionv1.AdmissionReview
		if json.Unmarshal(body, &in) == nil && in.Request != nil && out.Response.UID != in.Request.UID {
			t.Fatalf("response UID %q for request %q", out.Response.UID, in.Request.UID)
		}
	})
}
