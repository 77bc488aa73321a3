package webhook

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"remora.dev/remora/sidecar"
)

// kubeletEnv is container c's environment as the kubelet makes it from the
// namespace's Secrets (name → data): envFrom first, a later source winning,
// then env in order, a later entry winning; an optional reference to a
// missing Secret or key sets nothing. Values from fields are left out.
func kubeletEnv(c corev1.Container, secrets map[string]map[string]string) map[string]string {
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		for k, v := range secrets[ef.SecretRef.Name] {
			env[ef.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if v, ok := secrets[ref.Name][ref.Key]; ok {
				env[e.Name] = v
			}
		}
	}
	return env
}

// Only the allowlisted keys of the storage and credentials Secrets become
// the sidecar's environment: a Secret's LD_PRELOAD or REMORA_PG_BIN never
// does. Several storage Secrets overlay one another key by key, the last
// named winning; what the webhook sets itself wins over any Secret.
func TestSecretKeysAllowlisted(t *testing.T) {
	hostile := map[string]string{"LD_PRELOAD": "/tmp/evil.so", "REMORA_PG_BIN": "/tmp", "PATH": "/tmp", "GODEBUG": "x"}
	with := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range hostile {
			out[k] = v
		}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		password    bool // the database container names its password
		secrets     map[string]map[string]string
		want        map[string]string // "": unset
	}{
		{"default storage Secret", nil, true,
			map[string]map[string]string{"remora-storage": with(map[string]string{"AWS_ACCESS_KEY_ID": "k", "REMORA_STORAGE": "s3://b/", "REMORA_SMTP_CA_FILE": "/ca.pem"})},
			map[string]string{"AWS_ACCESS_KEY_ID": "k", "REMORA_STORAGE": "s3://b/", "REMORA_SMTP_CA_FILE": "/ca.pem"}},
		{"no storage Secret: the chart's default", nil, true, nil,
			map[string]string{"REMORA_STORAGE": "", sidecar.EnvDefaultStorage: goldenConfig().DefaultStorage}},
		{"several storage Secrets", map[string]string{"remora.dev/storage": "a,b,c"}, true,
			map[string]map[string]string{"a": with(map[string]string{"REMORA_STORAGE": "s3://a/", "AWS_ACCESS_KEY_ID": "ka"}), "b": {"AWS_ACCESS_KEY_ID": "kb"}},
			map[string]string{"REMORA_STORAGE": "s3://a/", "AWS_ACCESS_KEY_ID": "kb"}},
		{"credentials Secret", map[string]string{"remora.dev/credentials": "creds"}, false,
			map[string]map[string]string{"creds": with(map[string]string{"REMORA_DB_PASSWORD": "pw", "REMORA_DB_USER": "u", "AWS_ACCESS_KEY_ID": "not here"})},
			map[string]string{"REMORA_DB_PASSWORD": "pw", "REMORA_DB_USER": "u", "AWS_ACCESS_KEY_ID": ""}},
		{"the webhook's own win", map[string]string{"remora.dev/credentials": "creds"}, true,
			map[string]map[string]string{"creds": {"REMORA_DSN": "postgres://elsewhere/", "REMORA_DB_PASSWORD": "pw"}, "db-secret": {"password": "db-pw"}},
			map[string]string{"REMORA_DSN": "postgres://postgres@127.0.0.1:5432/postgres", "REMORA_DB_PASSWORD": "db-pw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := postgresPod()
			for k, v := range tc.annotations {
				pod.Annotations[k] = v
			}
			if !tc.password {
				pod.Spec.Containers[0].Env = nil
			}
			c := sidecarFrom(t, Mutate(pod, "shop", goldenConfig()))
			env := kubeletEnv(c, tc.secrets)
			for k := range hostile {
				if v, ok := env[k]; ok {
					t.Errorf("%s=%s from a Secret reaches the sidecar", k, v)
				}
			}
			for k, want := range tc.want {
				if got, ok := env[k]; got != want || want == "" && ok {
					t.Errorf("%s=%q, want %q", k, got, want)
				}
			}
			allowed := append(sidecar.StorageSecretKeys(), sidecar.CredentialsSecretKeys()...)
			for _, e := range c.Env {
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil && ref.SecretKeyRef.Name != "db-secret" &&
					(!slices.Contains(allowed, ref.SecretKeyRef.Key) || e.Name != ref.SecretKeyRef.Key || ref.SecretKeyRef.Optional == nil || !*ref.SecretKeyRef.Optional) {
					t.Errorf("env %s: %+v", e.Name, ref.SecretKeyRef)
				}
			}
		})
	}
}
