package bench

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"remora.dev/remora/webhook"
)

// tlsServer serves h over TLS on loopback with a fresh ECDSA certificate, as
// `remora webhook` does, and returns its URL and a client trusting it.
func tlsServer(b *testing.B, h http.Handler) (string, *tls.Config) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second}
	go srv.ServeTLS(ln, "", "")
	b.Cleanup(func() { srv.Close() })
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(der)
	pool.AddCert(leaf)
	return "https://" + ln.Addr().String() + "/mutate", &tls.Config{RootCAs: pool}
}

func admissionBody() []byte {
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "shop",
			OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: "db", APIVersion: "apps/v1"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: "postgres:17",
			Env: []corev1.EnvVar{{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}}}},
			Volumes: []corev1.Volume{{Name: "data"}}},
	}
	obj, _ := json.Marshal(pod)
	body, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{"uid": "8d0ad6c0-0000-4000-8000-000000000001", "kind": map[string]any{"group": "", "version": "v1", "kind": "Pod"},
			"resource": map[string]any{"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
			"namespace": "shop", "name": "db-0", "object": json.RawMessage(obj)}})
	return body
}

// load posts body from c clients for d and returns the latencies: over
// HTTP/2 (one connection carrying every request, as the API server calls
// webhooks) or over HTTP/1.1 (a keep-alive connection per client).
func load(b *testing.B, url string, tc *tls.Config, h2 bool, body []byte, clients int, d time.Duration) []time.Duration {
	tr := &http.Transport{TLSClientConfig: tc.Clone(), MaxIdleConnsPerHost: clients, ForceAttemptHTTP2: h2}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var mu sync.Mutex
	var all []time.Duration
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) {
				start := time.Now()
				resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(all)
	return all
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkWebhookAdmission: admission requests per second and p50/p99
// latency of `remora webhook`'s handler at 1, 16 and 64 concurrent clients,
// beside a handler that answers a fixed AdmissionReview on the same TLS stack
// (the baseline), REMORA_BENCH_WEBHOOK_SECONDS (default 3) per cell,
// alternating the two.
func BenchmarkWebhookAdmission(b *testing.B) {
	seconds := envInt("REMORA_BENCH_WEBHOOK_SECONDS", 3)
	body := admissionBody()
	cfg := webhook.Config{Image: "remora:bench", SidecarMode: "auto", NativeSupported: true, AutoDetect: true, OwnNamespace: "remora-system"}
	remoraURL, tc := tlsServer(b, webhook.NewHandler(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry()))
	fixed := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"8d0ad6c0-0000-4000-8000-000000000001","allowed":true}}`)
	baseURL, tc2 := tlsServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(fixed)
	}))
	b.ResetTimer()
	fmt.Printf("\nWebhook admission, %d s per cell, HTTPS on loopback, load generator in the same process\n", seconds)
	fmt.Printf("| %s | %s | %s | %s | %s | %s | %s |\n|---|---:|---|---:|---:|---:|---:|\n", "protocol", "clients", "handler", "req/s", "p50", "p99", "p99 ratio")
	for _, h2 := range []bool{true, false} {
		proto := "HTTP/1.1, a connection per client"
		if h2 {
			proto = "HTTP/2, one connection (as the API server)"
		}
		for _, clients := range []int{1, 16, 64} {
			base := load(b, baseURL, tc2, h2, body, clients, time.Duration(seconds)*time.Second)
			rem := load(b, remoraURL, tc, h2, body, clients, time.Duration(seconds)*time.Second)
			for _, row := range []struct {
				name string
				lat  []time.Duration
			}{{"do-nothing (baseline)", base}, {"`remora webhook`", rem}} {
				fmt.Printf("| %s | %d | %s | %.0f | %s | %s | %.2f× |\n", proto, clients, row.name, float64(len(row.lat))/float64(seconds),
					pct(row.lat, 0.5).Round(time.Microsecond), pct(row.lat, 0.99).Round(time.Microsecond),
					float64(pct(row.lat, 0.99))/float64(pct(base, 0.99)))
			}
		}
	}
	b.StopTimer()
}
