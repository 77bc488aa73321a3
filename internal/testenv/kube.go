package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"k8s.io/apimachinery/pkg/util/yaml"

	"remora.dev/remora/internal/kube"
)

// Kube is a real control plane: etcd and kube-apiserver, no nodes. Pods can be
// created and admission webhooks called; nothing runs them.
type Kube struct {
	Server    string // https://127.0.0.1:port
	Token     string // a system:masters bearer token
	TokenFile string
	CAFile    string // signs the API server's certificate
	Dir       string
	Client    *kube.Client
	api, etcd *proc
}

// KubeBinDir is the folder holding kube-apiserver and etcd: REMORA_KUBE_BIN,
// as `make` sets it from hack/kube-binaries.sh.
func KubeBinDir() string {
	if d := os.Getenv("REMORA_KUBE_BIN"); d != "" {
		return d
	}
	out, err := exec.Command(filepath.Join(RepoRoot(), "hack", "kube-binaries.sh"), "--dir").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// StartKube starts etcd and kube-apiserver in a temp dir on loopback ports and
// stops them when the test ends. Start-up takes about 4 s.
func StartKube(t testing.TB) *Kube {
	t.Helper()
	bin := KubeBinDir()
	if bin == "" || !isExec(filepath.Join(bin, "kube-apiserver")) || !isExec(filepath.Join(bin, "etcd")) {
		Missing(t, "kube-apiserver and etcd", "run `hack/kube-binaries.sh` (builds them from tools/kube-apiserver and tools/etcd) or set REMORA_KUBE_BIN")
	}
	dir, err := os.MkdirTemp("", "rkube")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	k := &Kube{Dir: dir, Token: "remora-admin-" + itoa(os.Getpid()), TokenFile: filepath.Join(dir, "token")}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	saKey := write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	saPub := write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	tokens := write("tokens.csv", []byte(k.Token+",remora-admin,uid-admin,system:masters\n"))
	write("token", []byte(k.Token+"\n"))

	ec, ep := FreePort(t), FreePort(t)
	etcd := exec.Command(filepath.Join(bin, "etcd"), "--name=remora", "--data-dir="+filepath.Join(dir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", ec), fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", ec),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", ep), fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", ep),
		fmt.Sprintf("--initial-cluster=remora=http://127.0.0.1:%d", ep), "--unsafe-no-fsync=true", "--log-level=warn")
	k.etcd = start(t, etcd, filepath.Join(dir, "etcd.log"))
	t.Cleanup(func() { k.etcd.stop(syscall.SIGTERM) })
	if err := k.etcd.waitReady(func() error { return httpOK(fmt.Sprintf("http://127.0.0.1:%d/health", ec)) }); err != nil {
		t.Fatalf("etcd: %v", err)
	}

	kp := FreePort(t)
	k.Server = fmt.Sprintf("https://127.0.0.1:%d", kp)
	certs := filepath.Join(dir, "certs")
	api := exec.Command(filepath.Join(bin, "kube-apiserver"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", ec),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", kp),
		"--cert-dir="+certs, "--service-cluster-ip-range=10.0.0.0/24",
		"--service-account-issuer="+k.Server, "--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--token-auth-file="+tokens, "--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount", "--allow-privileged=true", "--endpoint-reconciler-type=none")
	k.api = start(t, api, filepath.Join(dir, "kube-apiserver.log"))
	t.Cleanup(func() { k.api.stop(syscall.SIGTERM) })
	k.CAFile = filepath.Join(certs, "apiserver.crt")
	err = k.api.waitReady(func() error {
		if k.Client == nil {
			if _, err := os.Stat(k.CAFile); err != nil {
				return err
			}
			c, err := kube.New(kube.Config{Server: k.Server, TokenFile: k.TokenFile, CAFile: k.CAFile})
			if err != nil {
				return err
			}
			k.Client = c
		}
		return k.Client.Do(t.Context(), http.MethodGet, "/readyz", nil, nil)
	})
	if err != nil {
		t.Fatalf("kube-apiserver: %v", err)
	}
	return k
}

func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// Helm is the pinned helm binary (tools/helm): REMORA_HELM, bin/helm or PATH.
func Helm(t testing.TB) string {
	t.Helper()
	p := lookPath("REMORA_HELM", "helm")
	if p == "" {
		Missing(t, "helm", "run `make bin/helm` or set REMORA_HELM")
	}
	return p
}

// Promtool returns the promtool binary that tests the chart's alerting rules
// (REMORA_PROMTOOL, else bin/promtool, else PATH).
func Promtool(t testing.TB) string {
	t.Helper()
	p := lookPath("REMORA_PROMTOOL", "promtool")
	if p == "" {
		Missing(t, "promtool", "run `make bin/promtool` or set REMORA_PROMTOOL")
	}
	return p
}

// ChartWebhookConfig renders the chart and returns its
// MutatingWebhookConfiguration, pointed at url instead of the Service (there is
// no cluster network here), as envtest does.
func ChartWebhookConfig(t testing.TB, url string, set ...string) map[string]any {
	t.Helper()
	args := []string{"template", "remora", filepath.Join(RepoRoot(), "charts", "remora"), "--namespace", "remora-system", "--kube-version", "1.37.2"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := exec.Command(Helm(t), args...).Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if m["kind"] != "MutatingWebhookConfiguration" {
			continue
		}
		for _, h := range m["webhooks"].([]any) {
			cc := h.(map[string]any)["clientConfig"].(map[string]any)
			svc := cc["service"].(map[string]any)
			delete(cc, "service")
			cc["url"] = url + svc["path"].(string)
		}
		return m
	}
	t.Fatal("the chart has no MutatingWebhookConfiguration")
	return nil
}

// Do calls the API server and fails the test on an error.
func (k *Kube) Do(t testing.TB, method, path string, in, out any) {
	t.Helper()
	if err := k.Client.Do(t.Context(), method, path, in, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}
