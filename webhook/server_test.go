package webhook

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// writePair writes a self-signed key pair for 127.0.0.1 named cn.
func writePair(t *testing.T, dir, cn string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "tls.crt.new"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "tls.key.new"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	os.Rename(filepath.Join(dir, "tls.key.new"), filepath.Join(dir, "tls.key"))
	os.Rename(filepath.Join(dir, "tls.crt.new"), filepath.Join(dir, "tls.crt"))
}

func TestServer(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "first")
	certs, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go certs.Watch(stop)
	reg := prometheus.NewRegistry()
	h := NewHandler(Config{NativeSupported: true, AutoDetect: true}, nil, reg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, TLSConfig: &tls.Config{GetCertificate: certs.GetCertificate}}
	go hs.ServeTLS(ln, "", "")
	defer hs.Close()
	srv := struct{ URL string }{"https://" + ln.Addr().String()}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	servedCN := func() string {
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}

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
		ct   string
		body []byte
		code int
	}{
		{"text/plain", review, http.StatusUnsupportedMediaType},
		{"application/json", []byte("{}"), http.StatusBadRequest},
		{"application/json", bytes.Repeat([]byte(" "), maxBody+10), http.StatusRequestEntityTooLarge},
	} {
		resp, err := client.Post(srv.URL, tc.ct, bytes.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %d bytes: %d, want %d", tc.ct, len(tc.body), resp.StatusCode, tc.code)
		}
	}
	if got := testutil.ToFloat64(h.total.WithLabelValues("injected")); got != 1 {
		t.Errorf("injected = %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, MetricAdmissions, MetricDuration); n < 2 {
		t.Errorf("metrics registered: %d", n)
	}

	// A renewed certificate is served without a restart.
	if cn := servedCN(); cn != "first" {
		t.Fatalf("serving %q", cn)
	}
	writePair(t, dir, "second")
	for start := time.Now(); servedCN() != "second"; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the renewed certificate was not picked up")
		}
	}
	if !strings.Contains(dirOf("/a/b/c"), "/a/b/") {
		t.Error("dirOf")
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
