package webhook

import (
	"bytes"
	"context"
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
	warnBusy        = "remora: not injected: the webhook is busy (%d admissions at once); the pod is admitted without the remora sidecar"
)

// Metric names.
const (
	MetricAdmissions = "remora_webhook_admissions_total"
	MetricDuration   = "remora_webhook_admission_duration_seconds"
	MetricInFlight   = "remora_webhook_admissions_in_flight"
	MetricWaiting    = "remora_webhook_admissions_waiting"
	// MetricNotInjected counts pods admitted without the sidecar, by why.
	MetricNotInjected = "remora_webhook_pods_not_injected_total"
)

// Reasons of MetricNotInjected. Every pod the webhook sees is in a labelled
// namespace, so each is one that might have expected backups: the first
// three are choices, the others pods that asked for a backup or that the
// webhook could not look at.
const (
	NotInjectedNotDetected = "not_detected"     // no database recognised and no remora.dev annotations
	NotInjectedOptedOut    = "opted_out"        // remora.dev/inject: "false"
	NotInjectedSystem      = "system_namespace" // kube-system, kube-public or the webhook's own
	NotInjectedRunsAsRoot  = "runs_as_root"     // files only root may read (with a warning)
	NotInjectedUndecodable = "undecodable"
	NotInjectedTooLarge    = "too_large"
	NotInjectedBusy        = "busy"
)

// Limits bound the admissions a Handler works on at once, and so its memory:
// each may hold a request of up to 3 MiB and the pod decoded from it.
type Limits struct {
	MaxInFlight int // admissions read and answered at once (at least 1)
	// QueueWait is how long a request that finds every slot taken waits
	// for one (less if the request ends first). Then, or at once when 0,
	// it is admitted unchanged with a warning and counted as busy. Keep it
	// well below the webhook's timeoutSeconds, so the answer arrives.
	QueueWait time.Duration
}

// DefaultLimits fit the chart's 128 MiB webhook.
var DefaultLimits = Limits{MaxInFlight: 8, QueueWait: 2 * time.Second}

// Handler serves /mutate: it checks and decodes the request and hands the
// pod to Review.
type Handler struct {
	Config   Config
	Log      *slog.Logger
	total    *prometheus.CounterVec
	duration prometheus.Histogram
	inFlight prometheus.Gauge
	waiting  prometheus.Gauge
	// notInjected counts pods admitted without the sidecar.
	notInjected *prometheus.CounterVec
	limits      Limits
	slots       chan struct{} // one token per admission in flight
	inSlot      func()        // tests: called once a request holds a slot
}

// NewHandler registers the webhook's metrics with reg. Its limits are
// DefaultLimits until SetLimits.
func NewHandler(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Handler {
	h := &Handler{Config: cfg, Log: log,
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricInFlight, Help: "Admission requests being read and answered."}),
		waiting:  prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricWaiting, Help: "Admission requests waiting for a slot (see --max-in-flight)."}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAdmissions,
			Help: "Admission requests by result: injected, skipped, skipped_warning (not injected although asked for: see the warning), denied, undecodable (the pod could not be read: admitted unchanged with a warning), too_large (over 3 MiB: admitted unchanged with a warning when its UID can be read, else 413), busy (no slot free in time: admitted unchanged with a warning when its UID can be read, else 503), error."}, []string{"result"}),
		notInjected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricNotInjected,
			Help: "Pods admitted without the sidecar, by reason: not_detected, opted_out, system_namespace, runs_as_root (files only root may read), undecodable, too_large, busy (the last four with a warning)."}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDuration,
			Help: "Time to answer an admission request.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}),
	}
	reg.MustRegister(h.total, h.duration, h.inFlight, h.waiting, h.notInjected)
	h.SetLimits(DefaultLimits)
	return h
}

// SetLimits sets the handler's limits; call it before serving.
func (h *Handler) SetLimits(l Limits) {
	l.MaxInFlight = max(l.MaxInFlight, 1)
	h.limits, h.slots = l, make(chan struct{}, l.MaxInFlight)
}

// ServeHTTP answers one AdmissionReview and counts it by result.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := "error"
	defer func() {
		h.total.WithLabelValues(result).Inc()
		h.duration.Observe(time.Since(start).Seconds())
	}()
	if !accepts(w, r) {
		return
	}
	release, ok := h.acquire(r.Context())
	if !ok {
		result = "busy"
		h.answerBusy(w, r)
		return
	}
	defer release()
	if h.inSlot != nil {
		h.inSlot()
	}
	req, failed := h.decode(w, r)
	if req == nil {
		result = failed
		return
	}
	resp, res := Review(req, h.Config)
	result = resultLabel(res)
	if reason := notInjectedReason(res); resp.Allowed && reason != "" {
		h.notInjected.WithLabelValues(reason).Inc()
	}
	if h.Log != nil {
		h.Log.Info("admission", "namespace", req.Namespace, "name", req.Name, "result", result, "reason", res.Skip+res.Denied)
	}
	if writeReview(w, resp) != nil {
		result = "error"
	}
}

// acquire takes a slot, waiting up to QueueWait for one, and returns what
// gives it back; false when none came free.
func (h *Handler) acquire(ctx context.Context) (release func(), ok bool) {
	release = func() {
		<-h.slots
		h.inFlight.Dec()
	}
	select {
	case h.slots <- struct{}{}:
		h.inFlight.Inc()
		return release, true
	default:
	}
	if h.limits.QueueWait <= 0 {
		return nil, false
	}
	h.waiting.Inc()
	defer h.waiting.Dec()
	timer := time.NewTimer(h.limits.QueueWait)
	defer timer.Stop()
	select {
	case h.slots <- struct{}{}:
		h.inFlight.Inc()
		return release, true
	case <-timer.C:
	case <-ctx.Done():
	}
	return nil, false
}

// answerBusy answers a request that got no slot, having read no more of it
// than names its UID: admitted unchanged with a warning, or 503 when the UID
// is not there.
func (h *Handler) answerBusy(w http.ResponseWriter, r *http.Request) {
	prefix, _ := io.ReadAll(io.LimitReader(r.Body, uidPrefix))
	if uid := requestUID(prefix); uid != "" {
		h.admitUnchanged(w, uid, NotInjectedBusy, fmt.Sprintf(warnBusy, h.limits.MaxInFlight))
		return
	}
	http.Error(w, "the webhook is busy", http.StatusServiceUnavailable)
}

// admitUnchanged answers the request with uid: admitted unchanged, with
// warning, and counted as not injected for reason.
func (h *Handler) admitUnchanged(w http.ResponseWriter, uid types.UID, reason, warning string) {
	if h.Log != nil {
		h.Log.Warn("admitted unchanged", "uid", uid, "reason", warning)
	}
	h.notInjected.WithLabelValues(reason).Inc()
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

// accepts checks that r POSTs JSON, and answers it when it does not.
func accepts(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return false
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return false
	}
	return true
}

// decode reads r's AdmissionReview, of at most maxBody, and returns its
// request. When it cannot, decode answers itself and returns the result
// label of its answer: a request too large is admitted unchanged with a
// warning when its UID can be read, else refused with 413.
func (h *Handler) decode(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionRequest, string) {
	body, tooLarge, err := readBody(r)
	switch {
	case err != nil:
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return nil, "error"
	case tooLarge:
		if uid := requestUID(body); uid != "" {
			h.admitUnchanged(w, uid, NotInjectedTooLarge, warnTooLarge)
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

// notInjectedReason is why Mutate let a pod through without the sidecar, ""
// when it injected or refused it or the pod has the sidecar already.
func notInjectedReason(res Result) string {
	switch {
	case res.Patch != nil || res.Denied != "":
		return ""
	case res.Undecodable:
		return NotInjectedUndecodable
	case res.Warn:
		return NotInjectedRunsAsRoot
	}
	return map[string]string{SkipNotDatabase: NotInjectedNotDetected, SkipOptOut: NotInjectedOptedOut, SkipSystemNamespace: NotInjectedSystem}[res.Skip]
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
