package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"remora.dev/remora/internal/kube"
	"remora.dev/remora/sidecar"
	"remora.dev/remora/webhook"
)

type webhookCommand struct {
	env                                    *environment
	listen, certFile, keyFile, metricsAddr string
	image, sidecarMode, namespace          string
	autoDetect, native                     string
	restoreAcross                          string // --restore-across-namespaces
	cpuRequest, memRequest, memLimit       string
	logFormat, logLevel                    string
	defaultStorage                         string
	backupVolume                           string
	tlsSecret, webhookConfig, service      string
	tlsHosts                               string
	caValidity, certValidity, certCheck    string
	kubeServer, kubeToken, kubeCA          string
	maxInFlight, queueWait, memoryLimit    string
	limits                                 webhook.Limits
}

// certTimes are the lifetimes of the certificates --tls-secret makes and how
// often it is checked.
type certTimes struct {
	ca, cert, check time.Duration
}

// certSource provides the serving certificate: a webhook.CertManager or a
// webhook.CertReloader.
type certSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	Ready() bool // a certificate is being served
}

func (w *webhookCommand) Run(ctx context.Context, args []string) error {
	// The webhook holds little and allocates per request: the collector's
	// default pace (not the data path's tighter one) keeps its latency low.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(100)
	}
	if err := w.parseFlags(args); err != nil {
		return err
	}
	c := common{logFormat: w.logFormat, logLevel: w.logLevel}
	log, err := c.logger(w.env)
	if err != nil {
		return err
	}
	cfg, err := w.config()
	if err != nil {
		return err
	}
	times, err := w.certTimes()
	if err != nil {
		return err
	}
	if w.limits, err = w.admissionLimits(); err != nil {
		return err
	}
	if err := w.setMemoryLimit(log); err != nil {
		return err
	}
	// The API server: for --tls-secret, and to learn whether it runs native sidecars.
	client, kerr := kube.New(kube.Config{Server: w.kubeServer, TokenFile: w.kubeToken, CAFile: w.kubeCA})
	if kerr != nil && w.tlsSecret != "" {
		return fmt.Errorf("webhook: --tls-secret needs the API server: %w", kerr)
	}
	if cfg.NativeSupported, err = w.nativeSidecars(ctx, client, kerr, log); err != nil {
		return err
	}
	// What starts below (certificate renewal or reloading) stops when the
	// command returns.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recycle := &webhook.Recycler{}
	certs, err := w.tlsSource(ctx, client, times, recycle.Rotated, log)
	if err != nil {
		return err
	}
	return w.serve(ctx, cfg, certs, recycle, log)
}

// parseFlags defines the webhook's flags, each with its environment twin, and
// parses args.
func (w *webhookCommand) parseFlags(args []string) error {
	fs := w.env.newFlagSet("webhook", "webhook [--tls-secret NAME | --tls-cert FILE --tls-key FILE] [flags]")
	stringFlag(fs, &w.listen, "listen", ":8443", "HTTPS address of /mutate")
	stringFlag(fs, &w.tlsSecret, "tls-secret", "", "keep the CA and serving certificate in this Secret of --namespace, publish the CA in the caBundle of --webhook-config and renew both (instead of --tls-cert/--tls-key)")
	stringFlag(fs, &w.webhookConfig, "webhook-config", "remora", "MutatingWebhookConfiguration whose caBundle --tls-secret keeps")
	stringFlag(fs, &w.service, "service", "remora-webhook", "the webhook's Service, named in the serving certificate")
	stringFlag(fs, &w.tlsHosts, "tls-hosts", "", "more DNS names or IP addresses for the serving certificate, comma-separated")
	stringFlag(fs, &w.caValidity, "ca-validity", "87600h", "lifetime of a CA made for --tls-secret (renewed after two thirds)")
	stringFlag(fs, &w.certValidity, "cert-validity", "8760h", "lifetime of a serving certificate made for --tls-secret (renewed after two thirds)")
	stringFlag(fs, &w.certCheck, "cert-check-interval", "1m", "how often --tls-secret is checked and renewed")
	stringFlag(fs, &w.kubeServer, "kube-server", "", "API server URL (default: in-cluster)")
	stringFlag(fs, &w.kubeToken, "kube-token-file", "", "bearer token file (default: the pod's service account)")
	stringFlag(fs, &w.kubeCA, "kube-ca-file", "", "CA of the API server (default: the pod's service account)")
	stringFlag(fs, &w.certFile, "tls-cert", "/etc/remora/tls/tls.crt", "serving certificate (reloaded when it changes), when --tls-secret is not set")
	stringFlag(fs, &w.keyFile, "tls-key", "/etc/remora/tls/tls.key", "serving key, when --tls-secret is not set")
	stringFlag(fs, &w.metricsAddr, "metrics-addr", ":9464", "address of /metrics, /healthz and /readyz")
	stringFlag(fs, &w.image, "sidecar-image", webhook.DefaultImage, "image of the injected sidecar")
	stringFlag(fs, &w.sidecarMode, "sidecar-mode", webhook.SidecarAuto, "auto, native (init container with restartPolicy Always) or classic")
	stringFlag(fs, &w.native, "native-sidecars", "auto", "whether the API server supports native sidecars (1.29+), for --sidecar-mode auto: auto asks the API server")
	stringFlag(fs, &w.autoDetect, "auto-detect", "true", "inject pods whose image is a recognised database, without annotations")
	stringFlag(fs, &w.restoreAcross, "restore-across-namespaces", "false", "let a pod's remora.dev/restore-from name another namespace's backups (read with the pod's own storage keys)")
	stringFlag(fs, &w.namespace, "namespace", "remora-system", "the webhook's own namespace, never injected")
	stringFlag(fs, &w.cpuRequest, "sidecar-cpu-request", sidecar.CPURequest, "sidecar CPU request")
	stringFlag(fs, &w.memRequest, "sidecar-memory-request", sidecar.MemoryRequest, "sidecar memory request")
	stringFlag(fs, &w.memLimit, "sidecar-memory-limit", sidecar.MemoryLimit, "sidecar memory limit")
	stringFlag(fs, &w.defaultStorage, "default-storage", "", "storage URL for sidecars whose storage Secret sets no REMORA_STORAGE")
	stringFlag(fs, &w.backupVolume, "backup-volume", "", "a volume (Kubernetes volume source as JSON: nfs, persistentVolumeClaim, ...) added to every injected pod and mounted in the sidecar at "+sidecar.BackupDir+", for file:// backups")
	stringFlag(fs, &w.maxInFlight, "max-in-flight", strconv.Itoa(webhook.DefaultLimits.MaxInFlight), "admission requests read and answered at once (each may hold up to 3 MiB)")
	stringFlag(fs, &w.queueWait, "queue-wait", webhook.DefaultLimits.QueueWait.String(), "how long a request waits for a free slot before the pod is admitted unchanged with a warning (0: not at all); keep it below the webhook's timeoutSeconds")
	stringFlag(fs, &w.memoryLimit, "memory-limit", "", "the container's memory limit (bytes, or a quantity such as 128Mi; the chart sets it from the pod's limit): unless GOMEMLIMIT is set, the Go runtime keeps to 90% of it (default: the cgroup's limit)")
	stringFlag(fs, &w.logFormat, "log-format", "json", "log format: text or json")
	stringFlag(fs, &w.logLevel, "log-level", "info", "log level")
	return parse(fs, args)
}

// config is the webhook.Config the flags ask for, checked; nativeSidecars
// fills in NativeSupported.
func (w *webhookCommand) config() (webhook.Config, error) {
	cfg := webhook.Config{Image: w.image, SidecarMode: w.sidecarMode, OwnNamespace: w.namespace, DefaultStorage: w.defaultStorage}
	autoDetect, err := strconv.ParseBool(w.autoDetect)
	if err != nil {
		return cfg, usagef("--auto-detect=%q: want true or false", w.autoDetect)
	}
	cfg.AutoDetect = autoDetect
	if cfg.RestoreAcrossNamespaces, err = strconv.ParseBool(cmp.Or(w.restoreAcross, "false")); err != nil {
		return cfg, usagef("--restore-across-namespaces=%q: want true or false", w.restoreAcross)
	}
	switch w.sidecarMode {
	case webhook.SidecarAuto, webhook.SidecarNative, webhook.SidecarClassic:
	default:
		return cfg, usagef("--sidecar-mode %q: want auto, native or classic", w.sidecarMode)
	}
	if cfg.BackupVolume, err = backupVolume(w.backupVolume); err != nil {
		return cfg, err
	}
	cfg.Resources, err = w.resources()
	return cfg, err
}

// backupVolume reads --backup-volume: a Kubernetes volume source as JSON
// (e.g. {"nfs":{"server":"nfs.example","path":"/exports/backups"}}), exactly
// one kind of volume, no unknown fields. Empty: none.
func backupVolume(s string) (*corev1.VolumeSource, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var v corev1.VolumeSource
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return nil, usagef("--backup-volume: want a volume source as JSON, e.g. {\"nfs\":{\"server\":\"nfs.example\",\"path\":\"/exports\"}} or {\"persistentVolumeClaim\":{\"claimName\":\"backups\"}}: %v", err)
	}
	b, _ := json.Marshal(v)
	var kinds map[string]json.RawMessage
	json.Unmarshal(b, &kinds)
	if len(kinds) != 1 {
		return nil, usagef("--backup-volume: give exactly one kind of volume, got %d", len(kinds))
	}
	return &v, nil
}

// resources are the sidecar's requests and limits; a flag set empty sets
// none.
func (w *webhookCommand) resources() (corev1.ResourceRequirements, error) {
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, q := range []struct {
		name, v string
		list    corev1.ResourceList
		key     corev1.ResourceName
	}{{"sidecar-cpu-request", w.cpuRequest, res.Requests, corev1.ResourceCPU}, {"sidecar-memory-request", w.memRequest, res.Requests, corev1.ResourceMemory},
		{"sidecar-memory-limit", w.memLimit, res.Limits, corev1.ResourceMemory}} {
		if q.v == "" {
			continue
		}
		qty, err := resource.ParseQuantity(q.v)
		if err != nil {
			return res, usagef("--%s=%q: not a quantity", q.name, q.v)
		}
		q.list[q.key] = qty
	}
	return res, nil
}

// certTimes reads --ca-validity, --cert-validity and --cert-check-interval:
// each a positive duration.
func (w *webhookCommand) certTimes() (certTimes, error) {
	var t certTimes
	for _, d := range []struct {
		name, v string
		p       *time.Duration
	}{{"ca-validity", w.caValidity, &t.ca}, {"cert-validity", w.certValidity, &t.cert}, {"cert-check-interval", w.certCheck, &t.check}} {
		v, err := time.ParseDuration(d.v)
		if err != nil || v <= 0 {
			return t, usagef("--%s=%q: want a duration such as 8760h", d.name, d.v)
		}
		*d.p = v
	}
	return t, nil
}

// admissionLimits reads --max-in-flight (at least 1) and --queue-wait (a
// duration, 0 or more).
func (w *webhookCommand) admissionLimits() (webhook.Limits, error) {
	var l webhook.Limits
	n, err := strconv.Atoi(w.maxInFlight)
	if err != nil || n < 1 {
		return l, usagef("--max-in-flight=%q: want a whole number of at least 1", w.maxInFlight)
	}
	wait, err := time.ParseDuration(w.queueWait)
	if err != nil || wait < 0 {
		return l, usagef("--queue-wait=%q: want a duration such as 2s, or 0", w.queueWait)
	}
	return webhook.Limits{MaxInFlight: n, QueueWait: wait}, nil
}

// setMemoryLimit holds the Go runtime to 90% of the container's memory
// limit, so the collector works harder before the kernel kills the webhook
// for a burst of large requests; GOMEMLIMIT, when set, is left in force.
func (w *webhookCommand) setMemoryLimit(log *slog.Logger) error {
	if os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	limit, from, err := w.goMemoryLimit("/")
	if err != nil || limit == 0 {
		return err
	}
	debug.SetMemoryLimit(limit)
	log.Info("Go memory limit", "bytes", limit, "from", from)
	return nil
}

// goMemoryLimit is 90% of --memory-limit, else of the memory limit of the
// cgroup under root (v2, then v1), and where it came from; 0 when there is
// none.
func (w *webhookCommand) goMemoryLimit(root string) (int64, string, error) {
	if w.memoryLimit != "" {
		q, err := resource.ParseQuantity(w.memoryLimit)
		if err != nil || q.Value() <= 0 {
			return 0, "", usagef("--memory-limit=%q: want a size such as 128Mi or 134217728", w.memoryLimit)
		}
		return q.Value() / 10 * 9, "--memory-limit", nil
	}
	for _, f := range []string{"sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		// "max" (v2) or a page-rounded 2^63 (v1) means no limit.
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0, "", nil
		}
		return n / 10 * 9, "/" + f, nil
	}
	return 0, "", nil
}

// nativeSidecars is whether the API server supports native sidecars
// (Kubernetes 1.29+), which --sidecar-mode auto follows: as --native-sidecars
// says, or for auto as the server's version says. When the server (client,
// nil with the error kerr) or its version cannot be reached, it is assumed.
func (w *webhookCommand) nativeSidecars(ctx context.Context, client *kube.Client, kerr error, log *slog.Logger) (bool, error) {
	switch w.native {
	case "true", "false":
		return w.native == "true", nil
	case "auto":
	default:
		return false, usagef("--native-sidecars=%q: want auto, true or false", w.native)
	}
	if client == nil {
		log.Warn("API server not reachable, assuming native sidecars (Kubernetes 1.29+)", "error", kerr)
		return true, nil
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	major, minor, err := client.Version(vctx)
	cancel()
	if err != nil {
		log.Warn("cannot read the API server version, assuming native sidecars (Kubernetes 1.29+)", "error", err)
		return true, nil
	}
	native := major > 1 || minor >= 29
	log.Info("API server version", "version", fmt.Sprintf("%d.%d", major, minor), "native_sidecars", native)
	return native, nil
}

// tlsSource starts what provides the serving certificate, until ctx ends:
// with --tls-secret a CertManager that keeps it in that Secret, else a
// CertReloader of --tls-cert and --tls-key. onChange is called after the
// certificate changed.
func (w *webhookCommand) tlsSource(ctx context.Context, client *kube.Client, times certTimes, onChange func(), log *slog.Logger) (certSource, error) {
	if w.tlsSecret != "" {
		cm := &webhook.CertManager{Client: client, Namespace: w.namespace, Secret: w.tlsSecret, WebhookConfig: w.webhookConfig,
			Hosts: w.hosts(), CAValidity: times.ca, CertValidity: times.cert, Log: log, OnChange: onChange}
		go cm.Run(ctx, times.check)
		return cm, nil
	}
	certs, err := webhook.NewCertReloader(w.certFile, w.keyFile, log)
	if err != nil {
		return nil, err
	}
	certs.OnChange = onChange
	go certs.Watch(ctx)
	return certs, nil
}

// hosts are the names the serving certificate is for: the Service's
// in-cluster names, then --tls-hosts.
func (w *webhookCommand) hosts() []string {
	hosts := []string{w.service, w.service + "." + w.namespace, w.service + "." + w.namespace + ".svc", w.service + "." + w.namespace + ".svc.cluster.local"}
	for _, h := range strings.Split(w.tlsHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// serve runs /mutate over HTTPS on --listen, and /metrics, /healthz and
// /readyz on --metrics-addr, until ctx ends (then /mutate shuts down
// gracefully) or either server fails, whose error it returns. Both addresses
// are bound before anything is served, so an address in use fails the
// command at once.
func (w *webhookCommand) serve(ctx context.Context, cfg webhook.Config, certs certSource, recycle *webhook.Recycler, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	h := webhook.NewHandler(cfg, log, reg)
	h.SetLimits(w.limits)
	mux.Handle("/mutate", recycle.Wrap(h))
	srv := &http.Server{Addr: w.listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second,
		ConnState: recycle.ConnState, ConnContext: recycle.ConnContext,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}}
	metrics := &http.Server{Addr: w.metricsAddr, Handler: metricsMux(reg, certs.Ready), ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", w.listen)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	mln, err := net.Listen("tcp", w.metricsAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("webhook: --metrics-addr: %w", err)
	}
	defer srv.Close()
	defer metrics.Close()
	log.Info("webhook serving", "listen", w.listen, "sidecar_mode", w.sidecarMode, "image", w.image)
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	go func() {
		if err := metrics.Serve(mln); err != nil {
			errc <- fmt.Errorf("webhook: metrics server: %w", err)
		}
	}()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// metricsMux serves reg's metrics, /healthz, and /readyz, which fails until
// ready reports a serving certificate.
func metricsMux(reg *prometheus.Registry, ready func() bool) http.Handler {
	mm := http.NewServeMux()
	mm.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mm.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mm.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready() {
			http.Error(w, "no serving certificate yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mm
}
