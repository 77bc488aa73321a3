package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"remora.dev/remora/internal/testenv"
)

func namespace(t *testing.T, k *testenv.Kube, name string, labels map[string]string) {
	t.Helper()
	k.Do(t, http.MethodPost, "/api/v1/namespaces", &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, nil)
}

func pgPod(ns, name string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "postgres", Image: "docker.io/library/postgres:16",
				Env: []corev1.EnvVar{{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "db-secret"}, Key: "password"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
}

func createPod(k *testenv.Kube, ctx context.Context, p *corev1.Pod) (*corev1.Pod, error) {
	var got corev1.Pod
	err := k.Client.Do(ctx, http.MethodPost, "/api/v1/namespaces/"+p.Namespace+"/pods", p, &got)
	return &got, err
}

// injected returns the stored pod's remora sidecar, native or classic.
func injected(p *corev1.Pod) *corev1.Container {
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if list[i].Name == "remora" {
				return &list[i]
			}
		}
	}
	return nil
}

// startWebhook starts `remora webhook` against k and waits until it is ready.
func startWebhook(t *testing.T, k *testenv.Kube, port, metricsPort int, extra ...string) *testenv.Process {
	t.Helper()
	args := append([]string{"webhook", "--tls-secret", "remora-webhook-tls", "--webhook-config", "remora", "--namespace", "remora-system",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", metricsPort), "--tls-hosts", "127.0.0.1",
		"--kube-server", k.Server, "--kube-token-file", k.TokenFile, "--kube-ca-file", k.CAFile, "--sidecar-image", "localhost/remora:test"}, extra...)
	w := remora.Start(t, nil, args...)
	t.Cleanup(func() { stopWebhook(w) })
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", metricsPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return w
			}
		}
		if w.Exited() {
			t.Fatalf("the webhook exited:\n%s", w.Logs())
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the webhook did not become ready:\n%s", w.Logs())
		}
	}
}

// stopWebhook interrupts the webhook and kills it if it has not exited
// within 15 s.
func stopWebhook(w *testenv.Process) {
	if ok, _ := w.Stop(os.Interrupt, 15*time.Second); !ok {
		w.Kill()
	}
}

// servingCert is the certificate the webhook presents now.
func servingCert(t *testing.T, port int) *x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func countCerts(p []byte) int {
	n := 0
	for rest := p; ; n++ {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return n
		}
	}
}

// TestWebhookInCluster runs the webhook against a real kube-apiserver with
// the chart's webhook configuration: the webhook makes its own CA and
// certificate, publishes the caBundle and rotates both while the API server
// keeps calling it.
func TestWebhookInCluster(t *testing.T) {
	k := testenv.StartKube(t)
	port, mport := testenv.FreePort(t), testenv.FreePort(t)
	namespace(t, k, "remora-system", nil)
	namespace(t, k, "shop", map[string]string{"remora.dev/injection": "enabled"})
	namespace(t, k, "plain", nil)
	cfg := testenv.ChartWebhookConfig(t, fmt.Sprintf("https://127.0.0.1:%d", port))
	k.Do(t, http.MethodPost, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", cfg, nil)

	// Certificates short enough to rotate during the test: a serving
	// certificate lives 6 s (renewed after 4 s), a CA 15 s (after 10 s).
	w := startWebhook(t, k, port, mport, "--cert-validity", "6s", "--ca-validity", "15s", "--cert-check-interval", "500ms")
	if !strings.Contains(w.Logs(), `"native_sidecars":true`) {
		t.Errorf("the webhook did not learn from /version that the API server runs native sidecars:\n%s", w.Logs())
	}

	ctx := t.Context()
	n := 0
	create := func(ns string, ann map[string]string) (*corev1.Pod, error) {
		n++
		return createPod(k, ctx, pgPod(ns, fmt.Sprintf("db-%d", n), ann))
	}

	// The API server learns the webhook configuration and the caBundle
	// asynchronously: until then pods are admitted unchanged (failurePolicy
	// Ignore), so wait for the first injected one.
	var pod *corev1.Pod
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		p, err := create("shop", nil)
		if err != nil {
			t.Fatal(err)
		}
		if injected(p) != nil {
			pod = p
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no pod was injected within 30 s; webhook logs:\n%s", w.Logs())
		}
	}
	t.Run("stored with a native sidecar", func(t *testing.T) {
		c := injected(pod)
		if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != "remora" || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("want the sidecar as an init container with restartPolicy Always, got init %v", pod.Spec.InitContainers)
		}
		if pod.Annotations["remora.dev/status"] != "injected" || len(pod.Spec.Containers) != 1 || c.Image != "localhost/remora:test" {
			t.Errorf("stored pod: annotations %v, containers %d, image %s", pod.Annotations, len(pod.Spec.Containers), c.Image)
		}
	})
	t.Run("unlabelled namespace untouched", func(t *testing.T) {
		p, err := create("plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		if injected(p) != nil || p.Annotations["remora.dev/status"] != "" {
			t.Errorf("pod in an unlabelled namespace was changed: %+v", p.Spec)
		}
	})
	t.Run("invalid annotation denied", func(t *testing.T) {
		_, err := create("shop", map[string]string{"remora.dev/schedule": "every day"})
		if err == nil {
			t.Fatal("a pod with remora.dev/schedule=every day was admitted")
		}
		for _, want := range []string{"remora.dev/schedule", "every day", "example"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("denial %q lacks %q", err, want)
			}
		}
	})

	t.Run("rotation", func(t *testing.T) {
		// For 25 s (past two CA renewals and several serving certificates),
		// every pod created must still be injected.
		serials, cas := map[string]bool{}, map[string]bool{}
		maxBundle, pods := 0, 0
		for start := time.Now(); time.Since(start) < 25*time.Second; time.Sleep(200 * time.Millisecond) {
			p, err := create("shop", nil)
			if err != nil {
				t.Fatal(err)
			}
			if injected(p) == nil {
				t.Fatalf("after %s and %d serving certificates, a pod was admitted without the sidecar; webhook logs:\n%s", time.Since(start), len(serials), w.Logs())
			}
			pods++
			cert := servingCert(t, port)
			serials[cert.SerialNumber.String()] = true
			cas[cert.Issuer.CommonName] = true
			var sec corev1.Secret
			k.Do(t, http.MethodGet, "/api/v1/namespaces/remora-system/secrets/remora-webhook-tls", nil, &sec)
			maxBundle = max(maxBundle, countCerts(sec.Data["ca.crt"]))
		}
		if len(serials) < 4 || len(cas) < 2 || maxBundle < 2 {
			t.Errorf("rotation not exercised: %d serving certificates, %d CAs, at most %d CAs in the bundle", len(serials), len(cas), maxBundle)
		}
		t.Logf("%d pods injected across %d serving certificates from %d CAs", pods, len(serials), len(cas))
	})

	t.Run("webhook down, pods still admitted", func(t *testing.T) {
		stopWebhook(w)
		p, err := create("shop", nil)
		if err != nil {
			t.Fatalf("with the webhook stopped, pod creation failed: %v", err)
		}
		if injected(p) != nil {
			t.Errorf("injected with the webhook stopped?")
		}
	})
	testenv.NoCanary(t, "webhook logs", w.Logs())
}
