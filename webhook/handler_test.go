package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// TestHandler posts AdmissionReviews, good and bad, to the handler behind a
// TLS server, and reads its metrics.
func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHandler(Config{NativeSupported: true, AutoDetect: true}, nil, reg)
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	client := srv.Client()

	raw, _ := json.Marshal(postgresPod())
	review, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u1", Namespace: "shop", Object: runtime.RawExtension{Raw: raw}}})
	resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(review))
	if err != nil {
		t.Fatal(err)
	}
	var out admissionv1.AdmissionReview
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if out.Kind != "AdmissionReview" || out.Response == nil || out.Response.UID != "u1" || !out.Response.Allowed || len(out.Response.Patch) == 0 {
		t.Fatalf("response: %+v", out)
	}
	for _, tc := range []struct {
		method, ct string
		body       []byte
		code       int
	}{
		{http.MethodGet, "", nil, http.StatusMethodNotAllowed},
		{http.MethodPost, "text/plain", review, http.StatusUnsupportedMediaType},
		{http.MethodPost, "application/json", []byte("{}"), http.StatusBadRequest},
		{http.MethodPost, "application/json", bytes.Repeat([]byte(" "), maxBody+10), http.StatusRequestEntityTooLarge},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL, bytes.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ct)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s %d bytes: %d, want %d", tc.method, tc.ct, len(tc.body), resp.StatusCode, tc.code)
		}
	}
	if got := testutil.ToFloat64(h.total.WithLabelValues("injected")); got != 1 {
		t.Errorf("injected = %v", got)
	}
	if got := testutil.ToFloat64(h.total.WithLabelValues("error")); got != 3 {
		t.Errorf("error = %v, want 3 (the bad requests)", got)
	}
	if got := testutil.ToFloat64(h.total.WithLabelValues("too_large")); got != 1 {
		t.Errorf("too_large = %v, want 1", got)
	}
	if n, _ := testutil.GatherAndCount(reg, MetricAdmissions, MetricDuration); n < 2 {
		t.Errorf("metrics registered: %d", n)
	}
}

// The handler's logs never carry a credential, even one a pod writes as a
// literal value, and a pod that refers to its Secret gets a patch that only
// refers to it too.
func TestNoSecretsFromAdmission(t *testing.T) {
	const canary = "Canary-s3cr3t-9f4b2e"
	var logs bytes.Buffer
	h := NewHandler(goldenConfig(), slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), prometheus.NewRegistry())
	for _, literal := range []bool{false, true} {
		pod := postgresPod()
		if literal {
			pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, corev1.EnvVar{Name: "POSTGRES_USER", Value: "u-" + canary})
			pod.Annotations["remora.dev/schedule"] = "not a schedule" // a denial, logged
		}
		obj, _ := json.Marshal(pod)
		body, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
			"request": map[string]any{"uid": "u", "kind": map[string]any{"kind": "Pod", "version": "v1"}, "operation": "CREATE",
				"namespace": "shop", "name": pod.Name, "object": json.RawMessage(obj)}})
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		if !literal && strings.Contains(rec.Body.String(), canary) {
			t.Errorf("the patch for a pod that refers to its Secret carries the secret")
		}
	}
	if strings.Contains(logs.String(), canary) {
		t.Errorf("the webhook logged a credential:\n%s", logs.String())
	}
}

func TestReview(t *testing.T) {
	raw, _ := json.Marshal(postgresPod())
	req := &admissionv1.AdmissionRequest{UID: "abc", Namespace: "shop", Object: runtime.RawExtension{Raw: raw}}
	resp, _ := Review(req, Config{NativeSupported: true, AutoDetect: true})
	if !resp.Allowed || resp.UID != "abc" || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("%+v", resp)
	}
	var ops []PatchOp
	if err := json.Unmarshal(resp.Patch, &ops); err != nil || len(ops) != 5 {
		t.Fatalf("patch: %s %v", resp.Patch, err)
	}
	resp, res := Review(&admissionv1.AdmissionRequest{UID: "x", Object: runtime.RawExtension{Raw: []byte("{not json")}}, Config{})
	if !resp.Allowed || resp.Patch != nil || len(resp.Warnings) != 1 || resultLabel(res) != "undecodable" {
		t.Fatalf("a pod that cannot be decoded must be admitted unchanged with a warning: %+v", resp)
	}
}

// reviewOf is an AdmissionReview request with uid for the JSON object obj,
// its fields in the API server's order (the UID first).
func reviewOf(uid string, obj []byte) []byte {
	b, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID(uid), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Operation: admissionv1.Create, Namespace: "shop", Object: runtime.RawExtension{Raw: obj}}})
	return b
}

// postReview posts body to srv and decodes the AdmissionReview it answers.
func postReview(t *testing.T, srv *httptest.Server, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Response == nil {
		t.Errorf("status %d, %v: %+v", resp.StatusCode, err, out)
		return nil
	}
	return out.Response
}

// A review whose pod cannot be decoded is admitted unchanged with a warning,
// as failurePolicy: Ignore promises, and counted.
func TestUndecodablePodIsAdmitted(t *testing.T) {
	h := NewHandler(goldenConfig(), nil, prometheus.NewRegistry())
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	for i, obj := range []string{`{"spec":{"containers":"not a list"}}`, `[1,2]`, `"a string"`, `{"metadata":{"annotations":{"remora.dev/inject":7}}}`} {
		uid := fmt.Sprintf("u-%d", i)
		r := postReview(t, srv, reviewOf(uid, []byte(obj)))
		if r == nil {
			continue
		}
		if !r.Allowed || r.UID != types.UID(uid) || r.Patch != nil || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "without the remora sidecar") {
			t.Errorf("%s: %+v", obj, r)
		}
	}
	if got := testutil.ToFloat64(h.total.WithLabelValues("undecodable")); got != 4 {
		t.Errorf("undecodable = %v, want 4", got)
	}
}

// Every pod the handler admits without the sidecar is counted by why, so an
// alert can tell pods in a labelled namespace that get no backups; pods
// injected, already injected or refused are not, nor a request answered with
// an HTTP error (the API server counts its own fail-open).
func TestNotInjectedCounted(t *testing.T) {
	pod := func(edit func(*corev1.Pod)) []byte {
		p := postgresPod()
		edit(p)
		b, _ := json.Marshal(p)
		return b
	}
	rootFiles := pod(func(p *corev1.Pod) {
		p.Annotations = map[string]string{"remora.dev/driver": "files", "remora.dev/container": "postgres", "remora.dev/paths": "/srv"}
		p.Spec.Containers[0].Image = "ghcr.io/example/cms:2.1"
		p.Spec.Containers[0].SecurityContext = nil
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr(int64(0))}
	})
	inOwn, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "own", Namespace: "remora-system", Object: runtime.RawExtension{Raw: pod(func(*corev1.Pod) {})}}})
	for _, tc := range []struct {
		name   string
		body   []byte
		busy   bool
		reason string // "": not counted
	}{
		{"injected", reviewOf("u", pod(func(*corev1.Pod) {})), false, ""},
		{"already injected", reviewOf("u", pod(func(p *corev1.Pod) { p.Annotations["remora.dev/status"] = "injected" })), false, ""},
		{"refused", reviewOf("u", pod(func(p *corev1.Pod) { p.Annotations["remora.dev/schedule"] = "whenever" })), false, ""},
		{"opted out", reviewOf("u", pod(func(p *corev1.Pod) { p.Annotations["remora.dev/inject"] = "false" })), false, "opted_out"},
		{"no database", reviewOf("u", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.27" })), false, "not_detected"},
		{"the webhook's namespace", inOwn, false, "system_namespace"},
		{"files only root can read", reviewOf("u", rootFiles), false, "runs_as_root"},
		{"undecodable", reviewOf("u", []byte(`{"spec":{"containers":"x"}}`)), false, "undecodable"},
		{"too large", reviewOf("u", hugePod(4<<20)), false, "too_large"},
		{"too large, no UID", bytes.Repeat([]byte(" "), 4<<20), false, ""},
		{"busy", reviewOf("u", pod(func(*corev1.Pod) {})), true, "busy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(goldenConfig(), nil, prometheus.NewRegistry())
			if tc.busy {
				h.SetLimits(Limits{MaxInFlight: 1})
				h.slots <- struct{}{} // the one slot is taken
			}
			req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			h.ServeHTTP(httptest.NewRecorder(), req)
			n := testutil.CollectAndCount(h.notInjected)
			switch {
			case tc.reason == "" && n != 0:
				t.Errorf("counted as not injected: %d series", n)
			case tc.reason != "" && (n != 1 || testutil.ToFloat64(h.notInjected.WithLabelValues(tc.reason)) != 1):
				t.Errorf("%d series, want one with reason %s", n, tc.reason)
			}
		})
	}
}
