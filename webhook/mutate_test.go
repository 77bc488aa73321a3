package webhook

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

func postgresPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "shop", Annotations: map[string]string{"team": "payments"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: "db", Controller: ptr(true)}}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "postgres", Image: "docker.io/library/postgres:16.4",
				Env: []corev1.EnvVar{{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "db-secret"}, Key: "password"}}}},
				VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}},
				SecurityContext: &corev1.SecurityContext{RunAsUser: ptr(int64(999)), RunAsGroup: ptr(int64(999))},
			}},
			Volumes: []corev1.Volume{{Name: "data"}},
		},
	}
}

func sidecarFrom(t *testing.T, res Result) corev1.Container {
	t.Helper()
	if len(res.Patch) == 0 {
		t.Fatalf("no patch: %+v", res)
	}
	b, _ := json.Marshal(res.Patch[0].Value)
	var c corev1.Container
	if err := json.Unmarshal(b, &c); err != nil {
		var cs []corev1.Container
		if err := json.Unmarshal(b, &cs); err != nil || len(cs) != 1 {
			t.Fatalf("first op is not the container: %s", b)
		}
		c = cs[0]
	}
	return c
}

func paths(res Result) string {
	var out []string
	for _, op := range res.Patch {
		out = append(out, op.Op+" "+op.Path)
	}
	return strings.Join(out, ", ")
}

func TestMutatePostgresStatefulSet(t *testing.T) {
	res := Mutate(postgresPod(), "shop", Config{NativeSupported: true, AutoDetect: true, Image: "remora:1"})
	want := "add /spec/initContainers, add /spec/volumes/-, add /spec/volumes/-, add /spec/volumes/-, add /metadata/annotations/remora.dev~1status"
	if got := paths(res); got != want {
		t.Fatalf("patch %s\nwant  %s", got, want)
	}
	c := sidecarFrom(t, res)
	if c.Name != "remora" || c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("not a native sidecar: %+v", c)
	}
	if v := envVar(&c, "REMORA_WORKLOAD"); v == nil || v.Value != "db-0" {
		t.Errorf("workload: %+v", v)
	}
	if v := envVar(&c, "REMORA_DB_PASSWORD"); v == nil || v.Value != "" || v.ValueFrom == nil || v.ValueFrom.SecretKeyRef.Name != "db-secret" {
		t.Errorf("the password must be copied as a reference: %+v", v)
	}
	if v := envVar(&c, "REMORA_DSN"); v == nil || v.Value != "postgres://postgres@127.0.0.1:5432/postgres" {
		t.Errorf("dsn: %+v", v)
	}
	if v := envVar(&c, "REMORA_POD_NAME"); v == nil || v.ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("pod name: %+v", v)
	}
	if v := envVar(&c, "AWS_SECRET_ACCESS_KEY"); len(c.EnvFrom) != 0 || v == nil || v.ValueFrom.SecretKeyRef.Name != "remora-storage" || !*v.ValueFrom.SecretKeyRef.Optional {
		t.Errorf("the storage Secret's keys must be optional references: %+v, %+v", v, c.EnvFrom)
	}
	var data *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == "data" {
			data = &c.VolumeMounts[i]
		}
	}
	if data == nil || !data.ReadOnly || data.MountPath != "/var/lib/postgresql/data" {
		t.Errorf("data mount: %+v", data)
	}
	sc := c.SecurityContext
	if *sc.RunAsUser != 999 || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.Capabilities.Drop[0] != "ALL" ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("security context: %+v", sc)
	}
	if c.Resources.Requests.Memory().String() != "32Mi" || c.Resources.Limits.Memory().String() != "256Mi" {
		t.Errorf("resources: %+v", c.Resources)
	}
}

func TestMutateDeploymentClassic(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "cache-7c9d5b8f6d-", Labels: map[string]string{"pod-template-hash": "7c9d5b8f6d"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "cache-7c9d5b8f6d", Controller: ptr(true)}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "redis", Image: "bitnami/redis:7.2",
			Env:   []corev1.EnvVar{{Name: "REDIS_PASSWORD", Value: "inline"}},
			Ports: []corev1.ContainerPort{{ContainerPort: 6380}}}}},
	}
	res := Mutate(pod, "shop", Config{SidecarMode: "classic", AutoDetect: true})
	if !strings.HasPrefix(paths(res), "add /spec/containers/-, add /spec/volumes, add /spec/volumes/-") || !strings.HasSuffix(paths(res), "add /metadata/annotations") {
		t.Fatalf("patch: %s", paths(res))
	}
	c := sidecarFrom(t, res)
	if c.RestartPolicy != nil {
		t.Error("a classic sidecar has no restart policy")
	}
	if v := envVar(&c, "REMORA_WORKLOAD"); v.Value != "cache" {
		t.Errorf("workload %q", v.Value)
	}
	if v := envVar(&c, "REMORA_DSN"); v.Value != "redis://127.0.0.1:6380" {
		t.Errorf("dsn %q", v.Value)
	}
	if v := envVar(&c, "REMORA_DB_PASSWORD"); v == nil || v.Value != "inline" {
		t.Errorf("password not copied: %+v", v)
	}
}

func TestMutateDecisions(t *testing.T) {
	cfg := Config{NativeSupported: true, AutoDetect: true, OwnNamespace: "remora-system"}
	plain := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}}}
	optOut := postgresPod()
	optOut.Annotations["remora.dev/inject"] = "false"
	injected := postgresPod()
	injected.Annotations["remora.dev/status"] = "injected"
	bad := postgresPod()
	bad.Annotations["remora.dev/schedule"] = "every night"
	unknown := plain.DeepCopy()
	unknown.Annotations = map[string]string{"remora.dev/inject": "true"}
	files := plain.DeepCopy()
	files.Annotations = map[string]string{"remora.dev/inject": "true", "remora.dev/driver": "files", "remora.dev/paths": "/usr/share/nginx/html"}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		ns   string
		cfg  Config
		want string // skip reason, "denied: <substring>" or "patched"
	}{
		{"not a database", plain, "shop", cfg, SkipNotDatabase},
		{"kube-system", postgresPod(), "kube-system", cfg, SkipSystemNamespace},
		{"own namespace", postgresPod(), "remora-system", cfg, SkipSystemNamespace},
		{"opt-out", optOut, "shop", cfg, SkipOptOut},
		{"already injected", injected, "shop", cfg, SkipInjected},
		{"auto-detection off", postgresPod(), "shop", Config{}, SkipNotDatabase},
		{"bad annotation", bad, "shop", cfg, `denied: annotation remora.dev/schedule="every night"`},
		{"asked but no database", unknown, "shop", cfg, "denied: remora.dev/driver"},
		{"files driver", files, "shop", cfg, "patched"},
		{"postgres", postgresPod(), "shop", cfg, "patched"},
	} {
		res := Mutate(tc.pod, tc.ns, tc.cfg)
		got := res.Skip
		switch {
		case res.Denied != "":
			got = "denied: " + res.Denied
		case res.Patch != nil:
			got = "patched"
		}
		if !strings.Contains(got, strings.TrimPrefix(tc.want, "denied: ")) || strings.HasPrefix(tc.want, "denied") != strings.HasPrefix(got, "denied") {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestNeverRoot: a pod or database container that runs as root never gives
// the sidecar uid (or gid) 0, which runAsNonRoot makes the kubelet refuse
// (and, as a native sidecar, keeps the database from starting). Where no
// non-root user could read the database's files, the pod is not injected
// and the answer carries a warning.
func TestNeverRoot(t *testing.T) {
	root := ptr(int64(0))
	for _, tc := range []struct {
		name     string
		edit     func(p *corev1.Pod)
		wantUser int64 // 0: not injected, with a warning
	}{
		{"pod root", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = nil
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: root}
		}, 999},
		{"container root", func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: root, RunAsGroup: root}
		}, 999},
		{"files of an unknown image as root", func(p *corev1.Pod) {
			p.Annotations["remora.dev/driver"] = "files"
			p.Annotations["remora.dev/paths"] = "/data"
			p.Annotations["remora.dev/container"] = "postgres"
			p.Spec.Containers[0].Image = "ghcr.io/example/app:1"
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: root}
		}, 0},
		{"files as root with an fsGroup", func(p *corev1.Pod) {
			p.Annotations["remora.dev/driver"] = "files"
			p.Annotations["remora.dev/paths"] = "/data"
			p.Annotations["remora.dev/container"] = "postgres"
			p.Spec.Containers[0].Image = "ghcr.io/example/app:1"
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: root}
			p.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr(int64(2000))}
		}, 65532},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := postgresPod()
			tc.edit(pod)
			res := Mutate(pod, "shop", goldenConfig())
			if tc.wantUser == 0 {
				if res.Patch != nil || res.Skip == "" || !res.Warn {
					t.Fatalf("want no injection and a warning, got %+v", res)
				}
				return
			}
			sc := sidecarFrom(t, res).SecurityContext
			if sc.RunAsUser == nil || *sc.RunAsUser != tc.wantUser || sc.RunAsGroup != nil && *sc.RunAsGroup == 0 {
				t.Fatalf("sidecar runs as user %v group %v, want user %d and never group 0", deref(sc.RunAsUser), deref(sc.RunAsGroup), tc.wantUser)
			}
		})
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
