//go:build e2e

// Package e2e runs an injected pod for real: a real kube-apiserver stores a
// PostgreSQL pod through Remora's webhook, and podman runs exactly that pod
// (the PostgreSQL container and the remora sidecar from the project's image,
// sharing localhost and the data volume), backing up to an S3-compatible
// server on the host. `make e2e` builds the images and runs it.
package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/repo"
)

var remoraBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "remora-e2e")
	if err != nil {
		panic(err)
	}
	remoraBin = filepath.Join(dir, "remora")
	if out, err := exec.Command("go", "build", "-o", remoraBin, "../cmd/remora").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build remora: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// podmanPod turns the pod the API server stored into what podman 4.3's
// kube play runs, changing only what podman lacks:
//   - native sidecars (init containers with restartPolicy Always) are
//     ignored by podman 4.3, so they move to the regular containers;
//   - the downward-API volume is not supported, so a ConfigMap carries the
//     same annotations file, written the way the kubelet writes it;
//   - a secretKeyRef to a key the Secret lacks is dropped (the kubelet
//     leaves an optional one unset; podman secrets hold the keys);
//   - fieldRef metadata.namespace is not supported: the value the kubelet
//     would give (the namespace) is written in;
//   - images are local: imagePullPolicy Never.
func podmanPod(t *testing.T, stored *corev1.Pod, secrets map[string]map[string]string) []byte {
	t.Helper()
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: stored.Name, Labels: stored.Labels, Annotations: stored.Annotations},
		Spec:       *stored.Spec.DeepCopy()}
	var init []corev1.Container
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			c.RestartPolicy = nil
			p.Spec.Containers = append(p.Spec.Containers, c)
		} else {
			init = append(init, c)
		}
	}
	p.Spec.InitContainers = init
	var docs [][]byte
	for i := range p.Spec.Volumes {
		v := &p.Spec.Volumes[i]
		if v.DownwardAPI == nil {
			continue
		}
		var lines []string
		for k, val := range stored.Annotations {
			lines = append(lines, fmt.Sprintf("%s=%q", k, val))
		}
		sort.Strings(lines)
		cm := map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": v.Name},
			"data": map[string]string{"annotations": strings.Join(lines, "\n") + "\n", "labels": ""}}
		b, _ := yaml.Marshal(cm)
		docs = append(docs, b)
		v.VolumeSource = corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: v.Name}}}
	}
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		c.ImagePullPolicy = corev1.PullNever
		var env []corev1.EnvVar
		for _, e := range c.Env {
			f := e.ValueFrom
			switch {
			case f != nil && f.FieldRef != nil && f.FieldRef.FieldPath == "metadata.namespace":
				e.ValueFrom, e.Value = nil, stored.Namespace
			case f != nil && f.SecretKeyRef != nil:
				// An optional key the Secret lacks leaves the variable
				// unset, as the kubelet does.
				if _, ok := secrets[f.SecretKeyRef.Name][f.SecretKeyRef.Key]; !ok {
					continue
				}
			}
			env = append(env, e)
		}
		c.Env = env
	}
	b, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, b)
	return bytes.Join(docs, []byte("---\n"))
}

// podmanSecret creates a podman secret that kube play reads for secretKeyRef:
// a flat JSON map of key to base64 value.
func podmanSecret(t *testing.T, name string, data map[string]string) {
	t.Helper()
	m := map[string]string{}
	for k, v := range data {
		m[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	b, _ := json.Marshal(m)
	f := filepath.Join(t.TempDir(), name+".json")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	runErr("podman", "secret", "rm", name)
	run(t, "podman", "secret", "create", name, f)
	t.Cleanup(func() { runErr("podman", "secret", "rm", name) })
}

type listed struct {
	ID     string `json:"id"`
	Signed bool   `json:"signed"`
}

func TestInjectedPodBacksUp(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		testenv.Missing(t, "podman", "run hack/podman-setup.sh")
	}
	image := env("REMORA_IMAGE", "localhost/remora:dev")
	if _, err := runErr("podman", "image", "exists", image); err != nil {
		testenv.Missing(t, "the image "+image, "run `make image`")
	}
	pgImage := "localhost/postgres:17-e2e"
	run(t, "podman", "build", "-q", "-t", pgImage, "--build-arg", "BASE="+env("REMORA_BASE", "localhost/remora-base:trixie"), "postgres")

	s3 := testenv.StartS3Everywhere(t)
	s3.MakeBucket(t, "e2e")
	port := strings.TrimPrefix(s3.Endpoint, "127.0.0.1:")
	storage := fmt.Sprintf("s3://e2e/?endpoint=host.containers.internal:%s&region=%s&insecure=true", port, s3.Region)

	// The webhook, registered with the chart's configuration, in front of a
	// real API server.
	k := testenv.StartKube(t)
	whPort, whMetrics := testenv.FreePort(t), testenv.FreePort(t)
	cfg := testenv.ChartWebhookConfig(t, fmt.Sprintf("https://127.0.0.1:%d", whPort))
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "remora-system"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"remora.dev/injection": "enabled"}}},
	} {
		ns.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}
		k.Do(t, http.MethodPost, "/api/v1/namespaces", ns, nil)
	}
	k.Do(t, http.MethodPost, "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", cfg, nil)
	wh := exec.Command(remoraBin, "webhook", "--tls-secret", "remora-webhook-tls", "--webhook-config", "remora", "--namespace", "remora-system",
		"--listen", fmt.Sprintf("127.0.0.1:%d", whPort), "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", whMetrics), "--tls-hosts", "127.0.0.1",
		"--kube-server", k.Server, "--kube-token-file", k.TokenFile, "--kube-ca-file", k.CAFile,
		"--sidecar-image", image, "--default-storage", storage)
	var whLog bytes.Buffer
	wh.Stdout, wh.Stderr = &whLog, &whLog
	if err := wh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wh.Process.Kill(); wh.Wait() })

	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "orders-db-0", Namespace: "shop",
			Annotations: map[string]string{"remora.dev/schedule": "@every 1m"}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{
				Name: "postgres", Image: pgImage,
				Env: []corev1.EnvVar{
					{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: "orders-db"}, Key: "password"}}},
					{Name: "PGDATA", Value: "/var/lib/postgresql/data/pgdata"},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}
	var stored corev1.Pod
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		pod.Name = fmt.Sprintf("orders-db-%d", int(time.Since(start)/time.Second))
		stored = corev1.Pod{}
		_ = k.Client.Do(t.Context(), http.MethodDelete, "/api/v1/namespaces/shop/pods/"+pod.Name, nil, nil)
		k.Do(t, http.MethodPost, "/api/v1/namespaces/shop/pods", pod, &stored)
		if stored.Annotations["remora.dev/status"] == "injected" {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the API server never stored an injected pod; webhook log:\n%s", whLog.String())
		}
	}
	t.Logf("the API server stored %s with %d init and %d containers", stored.Name, len(stored.Spec.InitContainers), len(stored.Spec.Containers))

	signingKey, _, keyID, err := repo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]map[string]string{
		"orders-db": {"password": testenv.Canary},
		"remora-storage": {"AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": s3.SecretKey,
			"REMORA_SIGNING_KEY": string(signingKey), "LD_PRELOAD": "/nonexistent.so"},
	}
	for name, data := range secrets {
		podmanSecret(t, name, data)
	}
	manifest := podmanPod(t, &stored, secrets)
	file := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(file, manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	runErr("podman", "kube", "down", file)
	if out, err := runErr("podman", "kube", "play", "--replace", file); err != nil {
		t.Fatalf("podman kube play: %v\n%s\n%s", err, out, manifest)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{"postgres", "remora"} {
				out, _ := runErr("podman", "logs", "--tail", "60", stored.Name+"-"+c)
				t.Logf("%s logs:\n%s", c, out)
			}
		}
		runErr("podman", "kube", "down", file)
	})
	pgC, sideC := stored.Name+"-postgres", stored.Name+"-remora"
	psql := func(db, sql string) string {
		t.Helper()
		return strings.TrimSpace(run(t, "podman", "exec", "-u", "999", pgC, "psql", "-X", "-q", "-At", "-U", "postgres", "-d", db, "-c", sql))
	}
	for start := time.Now(); ; time.Sleep(300 * time.Millisecond) {
		if _, err := runErr("podman", "exec", "-u", "999", pgC, "pg_isready", "-q", "-h", "127.0.0.1"); err == nil {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatal("PostgreSQL did not start in the pod")
		}
	}
	psql("postgres", `CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(12,2), items jsonb, note bytea);
		INSERT INTO orders SELECT g, 'customer ' || (g % 977), (g * 1.37)::numeric(12,2),
		  jsonb_build_object('sku', g % 113, 'qty', g % 7), decode(md5(g::text), 'hex') FROM generate_series(1, 50000) g;
		CREATE TABLE customers AS SELECT g AS id, md5(random()::text) AS name FROM generate_series(1, 5000) g;`)

	list := func() []listed {
		t.Helper()
		var l []listed
		out := run(t, "podman", "exec", sideC, "remora", "list", "--json")
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("remora list --json: %v\n%s", err, out)
		}
		return l
	}
	// The schedule (@every 1m) takes one by itself.
	for start := time.Now(); len(list()) == 0; time.Sleep(2 * time.Second) {
		if time.Since(start) > 150*time.Second {
			t.Fatal("no scheduled backup within 150 s")
		}
	}
	if l := list(); !l[0].Signed {
		t.Fatalf("the scheduled backup is not signed: %+v", l)
	}
	t.Log("scheduled backup listed, signed")

	// Another on request, through the agent's socket.
	// (The default retention keeps the newest of each day, so the
	// scheduled one from the same day is pruned after it.)
	before := list()
	out := run(t, "podman", "exec", sideC, "remora", "backup", "--wait")
	after := list()
	if len(after) == 0 || slices.ContainsFunc(before, func(b listed) bool { return b.ID == after[len(after)-1].ID }) || !strings.Contains(out, "complete") {
		t.Fatalf("remora backup --wait: backups %v before, %v after\n%s", before, after, out)
	}
	t.Logf("remora backup --wait: %s", strings.TrimSpace(out))

	// Restore the latest into a new database, inside the sidecar, and
	// compare every table.
	out = run(t, "podman", "exec", sideC, "remora", "restore", "--latest", "--database", "postgres", "--into", "copy", "--yes")
	sum := func(db, table string) string {
		return psql(db, fmt.Sprintf("SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id)) FROM %s t", table))
	}
	for _, table := range []string{"orders", "customers"} {
		if a, b := sum("postgres", table), sum("copy", table); a != b {
			t.Errorf("table %s: original %s, restored %s", table, a, b)
		} else {
			t.Logf("table %s restored identical (%s)", table, a)
		}
	}
	status := run(t, "podman", "exec", sideC, "remora", "status")
	if !strings.Contains(status, "signed with key "+keyID) {
		t.Errorf("status does not name the signing key %s:\n%s", keyID, status)
	}
	if env := run(t, "podman", "exec", sideC, "env"); strings.Contains(env, "LD_PRELOAD") {
		t.Error("a storage Secret key outside the allowlist reached the sidecar")
	}
	logs, _ := runErr("podman", "logs", sideC)
	for what, s := range map[string]string{"restore output": out, "status": status, "sidecar logs": logs, "webhook logs": whLog.String(), "pod manifest": string(manifest)} {
		if strings.Contains(s, testenv.Canary) {
			t.Errorf("the password appears in the %s", what)
		}
		if strings.Contains(s, strings.Split(string(signingKey), "\n")[1]) {
			t.Errorf("the signing key appears in the %s", what)
		}
	}
}
