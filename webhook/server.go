package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxBody bounds an AdmissionReview request (the API server sends at most
// a few MiB).
const maxBody = 7 << 20

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
			Help: "Admission requests by result: injected, skipped, denied, error."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDuration,
			Help: "Time to answer an admission request.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}),
	}
	reg.MustRegister(h.total, h.duration)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := "error"
	defer func() {
		h.total.WithLabelValues(result).Inc()
		h.duration.Observe(time.Since(start).Seconds())
	}()
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		http.Error(w, "the request is too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "not an admission.k8s.io/v1 AdmissionReview", http.StatusBadRequest)
		return
	}
	resp, res := Review(review.Request, h.Config)
	switch {
	case res.Denied != "":
		result = "denied"
	case res.Patch != nil:
		result = "injected"
	default:
		result = "skipped"
	}
	if h.Log != nil {
		h.Log.Info("admission", "namespace", review.Request.Namespace, "name", review.Request.Name, "result", result, "reason", res.Skip+res.Denied)
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

// CertReloader serves a key pair from files and picks up new ones (a
// renewed Secret, a cert-manager rotation) without a restart.
type CertReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
	log               *slog.Logger
	// OnChange, when set, is called after a different certificate is loaded.
	OnChange func()
}

// NewCertReloader reads the pair once, failing fast on a bad one.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	c := &CertReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CertReloader) load() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("webhook: TLS key pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert.Store(&pair)
	return nil
}

// GetCertificate is for tls.Config.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// Watch reloads the pair when its directory changes (Secret volumes swap a
// ..data symlink), and every minute as a safety net, until stop closes.
func (c *CertReloader) Watch(stop <-chan struct{}) {
	w, err := fsnotify.NewWatcher()
	var events <-chan fsnotify.Event
	if err == nil {
		for _, f := range []string{c.certFile, c.keyFile} {
			_ = w.Add(dirOf(f))
		}
		events = w.Events
		defer w.Close()
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-events:
			time.Sleep(100 * time.Millisecond)
		case <-tick.C:
		}
		old := c.cert.Load()
		if err := c.load(); err != nil {
			if c.log != nil {
				c.log.Error("keeping the current certificate", "error", err)
			}
			continue
		}
		if !sameCert(old, c.cert.Load()) {
			if c.log != nil {
				c.log.Info("serving certificate reloaded")
			}
			if c.OnChange != nil {
				c.OnChange()
			}
		}
	}
}

func sameCert(a, b *tls.Certificate) bool {
	return a != nil && b != nil && len(a.Certificate) > 0 && len(b.Certificate) > 0 && string(a.Certificate[0]) == string(b.Certificate[0])
}

func dirOf(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == os.PathSeparator {
			return p[:i+1]
		}
	}
	return "."
}

// Recycler retires kept-alive connections that were opened with an older
// serving certificate, so that clients (API servers reuse a connection for as
// long as it is busy) handshake again and check the new certificate against
// the caBundle soon, not some day later. It never closes a connection under a
// client: the next response on an old connection carries "Connection: close"
// (closing an idle connection could race with a request being sent on it, and
// an API server does not resend a failed admission request, it skips the
// webhook). Install ConnState and ConnContext on the http.Server, wrap the
// handler with Wrap, and call Rotated after a change.
type Recycler struct {
	mu    sync.Mutex
	gen   int
	conns map[net.Conn]int // connection → generation it was opened in
}

type connKey struct{}

// ConnState tracks connections; see http.Server.ConnState.
func (r *Recycler) ConnState(c net.Conn, st http.ConnState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		r.conns = map[net.Conn]int{}
	}
	switch st {
	case http.StateNew:
		r.conns[c] = r.gen
	case http.StateHijacked, http.StateClosed:
		delete(r.conns, c)
	}
}

// ConnContext makes the connection known to Wrap; see http.Server.ConnContext.
func (r *Recycler) ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Wrap asks the client to close a connection from an older generation after
// this response.
func (r *Recycler) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if c, ok := req.Context().Value(connKey{}).(net.Conn); ok {
			r.mu.Lock()
			gen, known := r.conns[c]
			old := known && gen != r.gen
			r.mu.Unlock()
			if old {
				w.Header().Set("Connection", "close")
			}
		}
		h.ServeHTTP(w, req)
	})
}

// Rotated starts a new generation: connections opened before it close after
// their next response.
func (r *Recycler) Rotated() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
}
