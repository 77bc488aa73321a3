package webhook

import (
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
)

// maxBody bounds an AdmissionReview request (the API server sends at most
// a few MiB).
const maxBody = 7 << 20

// Warnings of pods admitted unchanged because the webhook could not look at
// them (failurePolicy: Ignore would admit them so too, but silently).
const (
	warnUndecodable = "remora: not injected: the pod in the admission request could not be decoded (%v); it is admitted without the remora sidecar"
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
			Help: "Admission requests by result: injected, skipped, skipped_warning (not injected although asked for: see the warning), denied, undecodable (the pod could not be read: admitted unchanged with a warning), error."}, []string{"result"}),
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
	req, ok := decode(w, r)
	if !ok {
		return
	}
	resp, res := Review(req, h.Config)
	result = resultLabel(res)
	if h.Log != nil {
		h.Log.Info("admission", "namespace", req.Namespace, "name", req.Name, "result", result, "reason", res.Skip+res.Denied)
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp})
	if err != nil {
		result = "error"
		http.Error(w, "encoding the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	// One write with its length: no chunked encoding, fewer TLS records.
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Write(out)
}

// decode checks that r POSTs a JSON AdmissionReview of at most maxBody and
// returns its request; when it does not, decode answers the error itself and
// returns false.
func decode(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionRequest, bool) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return nil, false
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "the request is too large or unreadable", http.StatusRequestEntityTooLarge)
		return nil, false
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an admission.k8s.io/v1 AdmissionReview", http.StatusBadRequest)
		return nil, false
	}
	return review.Request, true
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
