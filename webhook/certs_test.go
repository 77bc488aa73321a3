package webhook

import (
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"remora.dev/remora/internal/testenv"
)

func webhookConfigObject(name string) map[string]any {
	hook := func(n string) map[string]any {
		return map[string]any{"name": n, "admissionReviewVersions": []string{"v1"}, "sideEffects": "None", "failurePolicy": "Ignore",
			"clientConfig": map[string]any{"url": "https://127.0.0.1:1/mutate"},
			"rules":        []any{map[string]any{"operations": []string{"CREATE"}, "apiGroups": []string{""}, "apiVersions": []string{"v1"}, "resources": []string{"pods"}}}}
	}
	return map[string]any{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
		"metadata": map[string]any{"name": name}, "webhooks": []any{hook("inject.remora.dev"), hook("second.remora.dev")}}
}

// publishedBundles returns each webhook's caBundle as the API server has it.
func publishedBundles(t *testing.T, k *testenv.Kube, name string) []*x509.CertPool {
	t.Helper()
	var cfg struct {
		Webhooks []struct {
			ClientConfig struct {
				CABundle []byte `json:"caBundle"`
			} `json:"clientConfig"`
		} `json:"webhooks"`
	}
	if err := k.Client.Do(t.Context(), http.MethodGet, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"+name, nil, &cfg); err != nil {
		t.Fatal(err)
	}
	var pools []*x509.CertPool
	for _, w := range cfg.Webhooks {
		p := x509.NewCertPool()
		p.AppendCertsFromPEM(w.ClientConfig.CABundle)
		pools = append(pools, p)
	}
	return pools
}

// TestCertManagerYears runs two replicas sharing one Secret through 25
// simulated years (a week per step, replicas taking turns and sometimes both
// at once) against a real API server: every certificate either serves must
// verify against every published caBundle at that moment, and neither ever
// serves an expired one.
func TestCertManagerYears(t *testing.T) {
	k := testenv.StartKube(t)
	ctx := t.Context()
	if err := k.Client.Do(ctx, http.MethodPost, "/api/v1/namespaces", &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "remora-system"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := k.Client.Do(ctx, http.MethodPost, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", webhookConfigObject("remora"), nil); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hosts := []string{"remora-webhook.remora-system.svc", "127.0.0.1"}
	var reps []*CertManager
	for range 2 {
		reps = append(reps, &CertManager{Client: k.Client, Namespace: "remora-system", Secret: "remora-webhook-tls", WebhookConfig: "remora",
			Hosts: hosts, CAValidity: 10 * 365 * 24 * time.Hour, CertValidity: 365 * 24 * time.Hour, Log: log, now: clock})
	}

	// Both start at once: one creates the Secret, the other adopts it.
	var wg sync.WaitGroup
	for _, r := range reps {
		wg.Go(func() {
			if err := r.Sync(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	a, _ := reps[0].GetCertificate(nil)
	b, _ := reps[1].GetCertificate(nil)
	if !sameCert(a, b) {
		t.Fatal("two replicas starting together serve different certificates")
	}

	serials, cas := map[string]bool{}, map[string]bool{}
	for step := 0; step < 25*52; step++ {
		mu.Lock()
		now = now.Add(7 * 24 * time.Hour)
		mu.Unlock()
		switch step % 3 {
		case 0, 1:
			if err := reps[step%3].Sync(ctx); err != nil {
				t.Fatalf("week %d: %v", step, err)
			}
		case 2:
			for _, r := range reps {
				wg.Go(func() {
					if err := r.Sync(ctx); err != nil {
						t.Errorf("week %d: %v", step, err)
					}
				})
			}
			wg.Wait()
		}
		pools := publishedBundles(t, k, "remora")
		for i, r := range reps {
			c, err := r.GetCertificate(nil)
			if err != nil {
				t.Fatal(err)
			}
			serials[c.Leaf.SerialNumber.String()] = true
			cas[c.Leaf.Issuer.CommonName] = true
			for j, p := range pools {
				if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: p, DNSName: hosts[0], CurrentTime: clock()}); err != nil {
					t.Fatalf("%s: replica %d serves a certificate webhook %d's caBundle does not accept: %v", clock().Format("2006-01-02"), i, j, err)
				}
			}
		}
	}
	var sec corev1.Secret
	if err := k.Client.Do(ctx, http.MethodGet, "/api/v1/namespaces/remora-system/secrets/remora-webhook-tls", nil, &sec); err != nil {
		t.Fatal(err)
	}
	if n := len(parseCAsOnly(sec.Data[keyCACert])); n < 1 || n > 2 {
		t.Errorf("%d CAs in the bundle at the end, want 1 or 2 (expired ones dropped)", n)
	}
	// 25 years with one-year certificates renewed after 8 months, and CAs
	// renewed after 6.7 years.
	if len(serials) < 30 || len(cas) < 3 {
		t.Errorf("%d serving certificates from %d CAs over 25 years", len(serials), len(cas))
	}
	t.Logf("25 years: %d serving certificates from %d CAs", len(serials), len(cas))
}

func parseCAsOnly(p []byte) []*x509.Certificate {
	cas, _ := parseCAs(p, nil)
	return cas
}
