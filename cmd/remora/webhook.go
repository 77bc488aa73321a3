package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

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
}

func (w *webhookCommand) Run(ctx context.Context, args []string) error {
	fs := w.env.newFlagSet("webhook", "webhook --tls-cert FILE --tls-key FILE [flags]")
	stringFlag(fs, &w.listen, "listen", ":8443", "HTTPS address of /mutate")
	stringFlag(fs, &w.certFile, "tls-cert", "/etc/remora/tls/tls.crt", "serving certificate (reloaded when it changes)")
	stringFlag(fs, &w.keyFile, "tls-key", "/etc/remora/tls/tls.key", "serving key")
	stringFlag(fs, &w.metricsAddr, "metrics-addr", ":9464", "address of /metrics, /healthz and /readyz")
	stringFlag(fs, &w.image, "sidecar-image", "remora:latest", "image of the injected sidecar")
	stringFlag(fs, &w.sidecarMode, "sidecar-mode", "auto", "auto, native (init container with restartPolicy Always) or classic")
	stringFlag(fs, &w.native, "native-sidecars", "true", "whether the API server supports native sidecars (1.29+), for --sidecar-mode auto")
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
	}{{"native-sidecars", w.native, &cfg.NativeSupported}, {"auto-detect", w.autoDetect, &cfg.AutoDetect}} {
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

	certs, err := webhook.NewCertReloader(w.certFile, w.keyFile, log)
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go certs.Watch(stop)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/mutate", webhook.NewHandler(cfg, log, reg))
	srv := &http.Server{Addr: w.listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}}
	ln, err := net.Listen("tcp", w.listen)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	mm := http.NewServeMux()
	mm.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mm.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mm.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ready\n")) })
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
