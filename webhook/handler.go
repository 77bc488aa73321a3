package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// maxBody bounds an AdmissionReview request. A pod is at most about 1.5 MiB
// (etcd's request limit), so 3 MiB is ample; what is larger is answered
// without being read whole.
const maxBody = 3 << 20

// uidPrefix is how much of a request announced as too large is read to find
// its UID, which the API server writes before the object.
const uidPrefix = 64 << 10

// Warnings of pods admitted unchanged because the webhook could not look at
// them (failurePolicy: Ignore would admit them so too, but silently).
const (
	warnUndecodable = "remora: not injected: the pod in the admission request could not be decoded (%v); it is admitted without the remora sidecar"
	warnTooLarge    = "remora: not injected: the admission request is larger than 3 MiB; the pod is admitted without the remora sidecar"
)

// Metric names.
const (
	MetricAdmissions = "remora_webhook_admissions_total"
	MetricDuration   = "remora_webhook_admission_duration_seconds"
)

// Handler serves /mutate: it checks and decodes the request and hands the
// pod to Review.
type Handler struct {
	Config   Config
	Log      *slog.Logger
	total    *prometheus.CounterVec
	duration prometheus.Histogram
}

// NewHandler registers the webhook's metrics with reg.
func NewHandler(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Handler {
	h := &Handler{Config: cfg, Log: log,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAdmissions,
			Help: "Admission requests by result: injected, skipped, skipped_warning (not injected although asked for: see the warning), denied, undecodable (the pod could not be read: admitted unchanged with a warning), too_large (over 3 MiB: admitted unchanged with a warning when its UID can be read, else 413), error."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDuration,
			Help: "Time to answer an admission request.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}),
	}
	reg.MustRegister(h.total, h.duration)
	return h
}

// ServeHTTP answers one AdmissionReview and counts it by result.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := "error"
	defer func() {
		h.total.WithLabelValues(result).Inc()
		h.duration.Observe(time.Since(start).Seconds())
	}()
	req, failed := h.decode(w, r)
	if req == nil {
		result = failed
		return
	}
	resp, res := Review(req, h.Config)
	result = resultLabel(res)
	if h.Log != nil {
		h.Log.Info("admission", "namespace", req.Namespace, "name", req.Name, "result", result, "reason", res.Skip+res.Denied)
	}
	if writeReview(w, resp) != nil {
		result = "error"
	}
}

// admitUnchanged answers the request with uid: admitted unchanged, with
// warning.
func (h *Handler) admitUnchanged(w http.ResponseWriter, uid types.UID, warning string) {
	if h.Log != nil {
		h.Log.Warn("admitted unchanged", "uid", uid, "reason", warning)
	}
	writeReview(w, &admissionv1.AdmissionResponse{UID: uid, Allowed: true, Warnings: []string{warning}})
}

// writeReview writes resp in an AdmissionReview; the error is encoding's
// (then answered with a 500), not the client's.
func writeReview(w http.ResponseWriter, resp *admissionv1.AdmissionResponse) error {
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp})
	if err != nil {
		http.Error(w, "encoding the response: "+err.Error(), http.StatusInternalServerError)
		return err
	}
	// One write with its length: no chunked encoding, fewer TLS records.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Write(out)
	return nil
}

// decode checks that r POSTs a JSON AdmissionReview of at most maxBody and
// returns its request. When it does not, decode answers itself and returns
// the result label of its answer: a request too large is admitted unchanged
// with a warning when its UID can be read, else refused with 413.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionRequest, string) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return nil, "error"
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return nil, "error"
	}
	body, tooLarge, err := readBody(r)
	switch {
	case err != nil:
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return nil, "error"
	case tooLarge:
		if uid := requestUID(body); uid != "" {
			h.admitUnchanged(w, uid, warnTooLarge)
		} else {
			http.Error(w, "the request is larger than 3 MiB", http.StatusRequestEntityTooLarge)
		}
		return nil, "too_large"
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an admission.k8s.io/v1 AdmissionReview", http.StatusBadRequest)
		return nil, "error"
	}
	return review.Request, ""
}

// readBody reads r's body, at most maxBody. A body announced as larger is
// not read beyond uidPrefix; one that turns out larger, not beyond maxBody+1.
func readBody(r *http.Request) (body []byte, tooLarge bool, err error) {
	if r.ContentLength > maxBody {
		body, err = io.ReadAll(io.LimitReader(r.Body, uidPrefix))
		return body, true, err
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // one allocation when the length is announced
	}
	_, err = buf.ReadFrom(io.LimitReader(r.Body, maxBody+1))
	return buf.Bytes(), buf.Len() > maxBody, err
}

// requestUID is request.uid in the start of an AdmissionReview, "" when it
// is not there (the API server writes it before the object).
func requestUID(prefix []byte) types.UID {
	dec := json.NewDecoder(bytes.NewReader(prefix))
	var uid string
	if !seek(dec, "request") || !seek(dec, "uid") || dec.Decode(&uid) != nil {
		return ""
	}
	return types.UID(uid)
}

// seek enters the JSON object dec is at and stops before the value of key;
// false when the object has no such key or the input ends first.
func seek(dec *json.Decoder, key string) bool {
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return false
		}
		if k == key {
			return true
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}

// resultLabel is the metric's result label for what Mutate decided.
func resultLabel(res Result) string {
	switch {
	case res.Undecodable:
		return "undecodable"
	case res.Denied != "":
		return "denied"
	case res.Patch != nil:
		return "injected"
	case res.Warn:
		return "skipped_warning"
	default:
		return "skipped"
	}
}

// Review answers an AdmissionReview request.
func Review(req *admissionv1.AdmissionRequest, cfg Config) (*admissionv1.AdmissionResponse, Result) {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		// Fail open, as failurePolicy: Ignore promises: what cannot be read
		// is not the webhook's to refuse. The message names the field and
		// its type, never a value.
		res := Result{Undecodable: true, Skip: fmt.Sprintf(warnUndecodable, err)}
		resp.Warnings = []string{res.Skip}
		return resp, res
	}
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	res := Mutate(&pod, ns, cfg)
	switch {
	case res.Denied != "":
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: 400, Reason: metav1.StatusReasonInvalid, Message: res.Denied}
	case res.Patch != nil:
		b, _ := json.Marshal(res.Patch)
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = b, &pt
	case res.Warn:
		resp.Warnings = []string{res.Skip}
	}
	return resp, res
}
