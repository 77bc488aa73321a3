package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
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
	"remora.dev/remora/webhook"
)

type webhookCommand struct {
	env                                    *environment
	listen, certFile, keyFile, metricsAddr string
	image, sidecarMode, namespace          string
	autoDetect, native                     string
	cpuRequest, memRequest, memLimit       string
	logFormat, logLevel                    string
	defaultStorage                         string
	tlsSecret, webhookConfig, service      string
	tlsHosts                               string
	caValidity, certValidity, certCheck    string
	kubeServer, kubeToken, kubeCA          string
}

func (w *webhookCommand) Run(ctx context.Context, args []string) error {
	// The webhook holds little and allocates per request: the collector's
	// default pace (not the data path's tighter one) keeps its latency low.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(100)
	}
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
	stringFlag(fs, &w.image, "sidecar-image", "remora:latest", "image of the injected sidecar")
	stringFlag(fs, &w.sidecarMode, "sidecar-mode", "auto", "auto, native (init container with restartPolicy Always) or classic")
	stringFlag(fs, &w.native, "native-sidecars", "auto", "whether the API server supports native sidecars (1.29+), for --sidecar-mode auto: auto asks the API server")
	stringFlag(fs, &w.autoDetect, "auto-detect", "true", "inject pods whose image is a recognised database, without annotations")
	stringFlag(fs, &w.namespace, "namespace", "remora-system", "the webhook's own namespace, never injected")
	stringFlag(fs, &w.cpuRequest, "sidecar-cpu-request", "10m", "sidecar CPU request")
	stringFlag(fs, &w.memRequest, "sidecar-memory-request", "32Mi", "sidecar memory request")
	stringFlag(fs, &w.memLimit, "sidecar-memory-limit", "256Mi", "sidecar memory limit")
	stringFlag(fs, &w.defaultStorage, "default-storage", "", "storage URL for sidecars whose storage Secret sets no REMORA_STORAGE")
	stringFlag(fs, &w.logFormat, "log-format", "json", "log format: text or json")
	stringFlag(fs, &w.logLevel, "log-level", "info", "log level")
	if err := parse(fs, args); err != nil {
		return err
	}
	c := common{logFormat: w.logFormat, logLevel: w.logLevel}
	log, err := c.logger(w.env)
	if err != nil {
		return err
	}
	cfg := webhook.Config{Image: w.image, SidecarMode: w.sidecarMode, OwnNamespace: w.namespace, DefaultStorage: w.defaultStorage}
	for _, b := range []struct {
		name string
		v    string
		p    *bool
	}{{"auto-detect", w.autoDetect, &cfg.AutoDetect}} {
		v, err := strconv.ParseBool(b.v)
		if err != nil {
			return usageError{fmt.Sprintf("--%s=%q: want true or false", b.name, b.v)}
		}
		*b.p = v
	}
	if w.sidecarMode != "auto" && w.sidecarMode != "native" && w.sidecarMode != "classic" {
		return usageError{fmt.Sprintf("--sidecar-mode %q: want auto, native or classic", w.sidecarMode)}
	}
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
			return usageError{fmt.Sprintf("--%s=%q: not a quantity", q.name, q.v)}
		}
		q.list[q.key] = qty
	}
	cfg.Resources = res

	durations := map[string]*time.Duration{}
	for name, v := range map[string]string{"ca-validity": w.caValidity, "cert-validity": w.certValidity, "cert-check-interval": w.certCheck} {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return usageError{fmt.Sprintf("--%s=%q: want a duration such as 8760h", name, v)}
		}
		durations[name] = &d
	}

	// The API server: for --tls-secret, and to learn whether it runs native sidecars.
	client, kerr := kube.New(kube.Config{Server: w.kubeServer, TokenFile: w.kubeToken, CAFile: w.kubeCA})
	if kerr != nil && w.tlsSecret != "" {
		return fmt.Errorf("webhook: --tls-secret needs the API server: %w", kerr)
	}
	switch w.native {
	case "true", "false":
		cfg.NativeSupported = w.native == "true"
	case "auto":
		cfg.NativeSupported = true
		if client == nil {
			log.Warn("API server not reachable, assuming native sidecars (Kubernetes 1.29+)", "error", kerr)
			break
		}
		vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		major, minor, err := client.Version(vctx)
		cancel()
		if err != nil {
			log.Warn("cannot read the API server version, assuming native sidecars (Kubernetes 1.29+)", "error", err)
			break
		}
		cfg.NativeSupported = major > 1 || minor >= 29
		log.Info("API server version", "version", fmt.Sprintf("%d.%d", major, minor), "native_sidecars", cfg.NativeSupported)
	default:
		return usageError{fmt.Sprintf("--native-sidecars=%q: want auto, true or false", w.native)}
	}

	recycle := &webhook.Recycler{}
	var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	ready := func() bool { return true }
	if w.tlsSecret != "" {
		hosts := []string{w.service, w.service + "." + w.namespace, w.service + "." + w.namespace + ".svc", w.service + "." + w.namespace + ".svc.cluster.local"}
		for _, h := range strings.Split(w.tlsHosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hosts = append(hosts, h)
			}
		}
		cm := &webhook.CertManager{Client: client, Namespace: w.namespace, Secret: w.tlsSecret, WebhookConfig: w.webhookConfig,
			Hosts: hosts, CAValidity: *durations["ca-validity"], CertValidity: *durations["cert-validity"], Log: log, OnChange: recycle.Rotated}
		go cm.Run(ctx, *durations["cert-check-interval"])
		getCert, ready = cm.GetCertificate, cm.Ready
	} else {
		certs, err := webhook.NewCertReloader(w.certFile, w.keyFile, log)
		if err != nil {
			return err
		}
		certs.OnChange = recycle.Rotated
		stop := make(chan struct{})
		defer close(stop)
		go certs.Watch(stop)
		getCert = certs.GetCertificate
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/mutate", recycle.Wrap(webhook.NewHandler(cfg, log, reg)))
	srv := &http.Server{Addr: w.listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second,
		ConnState: recycle.ConnState, ConnContext: recycle.ConnContext,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert}}
	ln, err := net.Listen("tcp", w.listen)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
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
	metrics := &http.Server{Addr: w.metricsAddr, Handler: mm, ReadHeaderTimeout: 10 * time.Second}
	go metrics.ListenAndServe()
	defer metrics.Close()
	log.Info("webhook serving", "listen", w.listen, "sidecar_mode", w.sidecarMode, "image", w.image)
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
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
