package webhook

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"remora.dev/remora/sidecar"
	"remora.dev/remora/spec"
)

// restorePod is postgresPod asking for a restore from source.
func restorePod(source string) *corev1.Pod {
	pod := postgresPod()
	pod.Annotations[spec.AnnotationRestoreFrom] = source
	return pod
}

// initContainers are the init containers a patch adds, in order.
func initContainers(t *testing.T, res Result) []corev1.Container {
	t.Helper()
	var out []corev1.Container
	for _, op := range res.Patch {
		if !strings.HasPrefix(op.Path, "/spec/initContainers") {
			continue
		}
		b, _ := json.Marshal(op.Value)
		var cs []corev1.Container
		if json.Unmarshal(b, &cs) != nil {
			var c corev1.Container
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatalf("%s: %s", op.Path, b)
			}
			cs = []corev1.Container{c}
		}
		out = append(out, cs...)
	}
	return out
}

// TestRestoreReadsOwnNamespaceSecrets: the restore's storage keys are
// references to Secrets by name alone, which Kubernetes resolves in the
// pod's own namespace; a pod can never name another namespace's Secret. So
// a restore in namespace shop reads with shop's keys, whatever namespace
// it names. That keeps another tenant's backups out of reach only where
// each namespace's keys reach its own prefix alone (README, Tenants): the
// chart's shared default storage URL with one key in several namespaces,
// or its backup volume, reach every namespace's backups. Hence the rule:
// a restore names its own namespace unless the webhook is configured to
// allow others (--restore-across-namespaces).
func TestRestoreReadsOwnNamespaceSecrets(t *testing.T) {
	cfg := Config{NativeSupported: true, AutoDetect: true, Image: "remora:1"}
	res := Mutate(restorePod("billing/ledger-0@latest"), "shop", cfg)
	if res.Denied == "" || !strings.Contains(res.Denied, spec.AnnotationRestoreFrom) || !strings.Contains(res.Denied, "billing/ledger-0@latest") ||
		!strings.Contains(res.Denied, `example: "shop/ledger-0@latest"`) {
		t.Fatalf("another namespace's backups: %+v", res)
	}

	cfg.RestoreAcrossNamespaces = true
	pod := restorePod("billing/ledger-0@latest")
	pod.Annotations[spec.AnnotationStorage] = "remora-storage,offsite"
	pod.Annotations[spec.AnnotationCredentials] = "db-backup"
	res = Mutate(pod, "shop", cfg)
	inits := initContainers(t, res)
	if len(inits) != 2 || inits[0].Name != sidecar.RestoreContainerName || inits[1].Name != sidecar.ContainerName {
		t.Fatalf("init containers %+v", inits)
	}
	r := inits[0]
	if v := envVar(&r, sidecar.EnvNamespace); v == nil || v.Value != "billing" {
		t.Errorf("the restore reads the named namespace's backups: %+v", v)
	}
	var secrets []string
	for _, e := range r.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			secrets = append(secrets, e.ValueFrom.SecretKeyRef.Name)
		}
		if slices.Contains(sidecar.CredentialsSecretKeys(), e.Name) {
			t.Errorf("the restore touches no server: it gets no %s", e.Name)
		}
	}
	slices.Sort(secrets)
	if secrets = slices.Compact(secrets); !slices.Equal(secrets, []string{"offsite", "remora-storage"}) {
		t.Errorf("the restore's Secrets are %v, want the pod's own storage Secrets", secrets)
	}
	if len(r.EnvFrom) != 0 {
		t.Errorf("no whole Secret: %+v", r.EnvFrom)
	}
}

// TestRestoreDenied: a pod asking for a restore that cannot work is
// refused, with a message that says what to change.
func TestRestoreDenied(t *testing.T) {
	cfg := Config{NativeSupported: true, AutoDetect: true, Image: "remora:1"}
	for _, tc := range []struct {
		name   string
		change func(*corev1.Pod)
		want   []string
	}{
		{"read-only data volume", func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].ReadOnly = true },
			[]string{"read-only", `"data"`}},
		{"PGDATA from a ConfigMap", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "PGDATA",
				ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "pgdata"}}})
		}, []string{"PGDATA", "value"}},
		{"relative PGDATA", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: "PGDATA", Value: "data"})
		}, []string{"PGDATA", `"data"`, "absolute"}},
		{"no volume", func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts = nil },
			[]string{"/var/lib/postgresql/data", "no volume", "volumeMounts"}},
		{"a volume beside it", func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "/var/lib/postgresql/data2" },
			[]string{"/var/lib/postgresql/data", "no volume"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := restorePod("shop/db-0@latest")
			tc.change(pod)
			res := Mutate(pod, "shop", cfg)
			for _, w := range append(tc.want, spec.AnnotationRestoreFrom) {
				if !strings.Contains(res.Denied, w) {
					t.Errorf("denial %q does not say %q (%+v)", res.Denied, w, res)
				}
			}
		})
	}
}
