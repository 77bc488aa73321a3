// Package chart tests the Helm chart: it lints and renders it with the
// pinned helm (tools/helm) and checks what the cluster would get.
package chart

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"

	"remora.dev/remora/internal/testenv"
)

func helm(t *testing.T) string { return testenv.Helm(t) }

func render(t *testing.T, args ...string) map[string]*unstructured.Unstructured {
	t.Helper()
	cmd := exec.Command(helm(t), append([]string{"template", "remora", ".", "--namespace", "remora-system", "--kube-version", "1.33.0"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template: %v\n%s", err, errb.String())
	}
	objs := map[string]*unstructured.Unstructured{}
	dec := yaml.NewYAMLOrJSONDecoder(&out, 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode: %v\n%s", err, out.String())
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		objs[u.GetKind()+"/"+u.GetName()] = u
	}
	return objs
}

func TestLint(t *testing.T) {
	out, err := exec.Command(helm(t), "lint", ".", "--strict", "--set", "storage.s3.bucket=backups").CombinedOutput()
	if err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

func TestRender(t *testing.T) {
	objs := render(t, "--set", "storage.s3.bucket=backups", "--set", "storage.s3.endpoint=minio.storage:9000")
	mwc := objs["MutatingWebhookConfiguration/remora"]
	if mwc == nil {
		t.Fatalf("no MutatingWebhookConfiguration in %v", keys(objs))
	}
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	h := hooks[0].(map[string]any)
	for field, want := range map[string]any{"failurePolicy": "Ignore", "timeoutSeconds": int64(5), "sideEffects": "None", "reinvocationPolicy": "IfNeeded"} {
		if got := h[field]; got != want && !(field == "timeoutSeconds" && got == float64(5)) {
			t.Errorf("webhook %s = %v, want %v", field, got, want)
		}
	}
	sel, _, _ := unstructured.NestedSlice(h, "namespaceSelector", "matchExpressions")
	if s := strings.ReplaceAll(strings.TrimSpace(toString(sel)), " ", ""); !strings.Contains(s, "remora.dev/injection") || !strings.Contains(s, "kube-system") {
		t.Errorf("namespaceSelector: %v", sel)
	}
	// The webhook keeps its own TLS: no caBundle or Secret from the chart,
	// and RBAC for exactly that Secret and this configuration.
	if ca, _, _ := unstructured.NestedString(h, "clientConfig", "caBundle"); ca != "" || objs["Secret/remora-webhook-tls"] != nil {
		t.Errorf("the chart rendered TLS material: %v", keys(objs))
	}
	role, crole := objs["Role/remora-webhook"], objs["ClusterRole/remora-webhook"]
	if role == nil || crole == nil || objs["RoleBinding/remora-webhook"] == nil || objs["ClusterRoleBinding/remora-webhook"] == nil {
		t.Fatalf("RBAC missing: %v", keys(objs))
	}
	if r := toString(role.Object["rules"]); !strings.Contains(r, "remora-webhook-tls") {
		t.Errorf("Role rules: %s", r)
	}
	if r := toString(crole.Object["rules"]); !strings.Contains(r, "mutatingwebhookconfigurations") || !strings.Contains(r, "remora") || strings.Contains(r, "pods") {
		t.Errorf("ClusterRole rules: %s", r)
	}

	dep := objs["Deployment/remora-webhook"]
	if r, _, _ := unstructured.NestedFieldNoCopy(dep.Object, "spec", "replicas"); fmt.Sprint(r) != "2" {
		t.Errorf("replicas %v", r)
	}
	args, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	all := toString(args)
	for _, want := range []string{"--default-storage=s3://backups/?endpoint=minio.storage:9000&insecure=false", "--sidecar-mode=auto", "--namespace=remora-system",
		"--tls-secret=remora-webhook-tls", "--webhook-config=remora", "--service=remora-webhook"} {
		if !strings.Contains(all, want) {
			t.Errorf("webhook args lack %s: %s", want, all)
		}
	}
	if objs["PodDisruptionBudget/remora-webhook"] == nil || objs["Service/remora-webhook"] == nil {
		t.Errorf("objects: %v", keys(objs))
	}
}

func TestRenderCertManager(t *testing.T) {
	objs := render(t, "--set", "certManager.enabled=true")
	if objs["Certificate/remora-webhook"] == nil || objs["Issuer/remora-selfsigned"] == nil || objs["Secret/remora-webhook-tls"] != nil || objs["Role/remora-webhook"] != nil {
		t.Fatalf("objects: %v", keys(objs))
	}
	if a := objs["MutatingWebhookConfiguration/remora"].GetAnnotations()["cert-manager.io/inject-ca-from"]; a != "remora-system/remora-webhook" {
		t.Errorf("inject-ca-from %q", a)
	}
}

func keys(m map[string]*unstructured.Unstructured) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func toString(v any) string {
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				b.WriteString(k + " ")
				walk(e)
			}
		default:
			b.WriteString(fmt.Sprint(x) + " ")
		}
	}
	walk(v)
	return b.String()
}

// The webhook's Go runtime keeps to its memory limit, which the Deployment
// passes from the downward API, and its admissions in flight are bounded.
func TestRenderWebhookLimits(t *testing.T) {
	dep := render(t)["Deployment/remora-webhook"]
	cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	c := cs[0].(map[string]any)
	if args := toString(c["args"]); !strings.Contains(args, "--max-in-flight=8") {
		t.Errorf("args: %s", args)
	}
	env, _, _ := unstructured.NestedSlice(c, "env")
	found := false
	for _, e := range env {
		e := e.(map[string]any)
		ref, _, _ := unstructured.NestedMap(e, "valueFrom", "resourceFieldRef")
		if e["name"] == "REMORA_MEMORY_LIMIT" && ref["resource"] == "limits.memory" && ref["containerName"] == "webhook" && fmt.Sprint(ref["divisor"]) == "1" {
			found = true
		}
	}
	if !found {
		t.Errorf("no REMORA_MEMORY_LIMIT from limits.memory: %v", env)
	}
}

// networkPolicy.enabled adds a NetworkPolicy that admits the webhook's port
// (from the peers given, else anyone) and, with metrics, the metrics port.
func TestRenderNetworkPolicy(t *testing.T) {
	if objs := render(t); objs["NetworkPolicy/remora-webhook"] != nil {
		t.Fatal("a NetworkPolicy without networkPolicy.enabled")
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string // per rule: port, then the peers' CIDRs
	}{
		{"anyone", nil, []string{"8443", "9464"}},
		{"no metrics", []string{"--set", "networkPolicy.metrics=false"}, []string{"8443"}},
		{"peers", []string{"--set-json", `networkPolicy.webhookFrom=[{"ipBlock":{"cidr":"10.0.0.0/24"}}]`,
			"--set-json", `networkPolicy.metricsFrom=[{"ipBlock":{"cidr":"10.1.0.0/16"}}]`}, []string{"8443 10.0.0.0/24", "9464 10.1.0.0/16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			np := render(t, append([]string{"--set", "networkPolicy.enabled=true"}, tc.args...)...)["NetworkPolicy/remora-webhook"]
			if np == nil {
				t.Fatal("no NetworkPolicy")
			}
			if types, _, _ := unstructured.NestedStringSlice(np.Object, "spec", "policyTypes"); len(types) != 1 || types[0] != "Ingress" {
				t.Errorf("policyTypes %v", types)
			}
			if sel, _, _ := unstructured.NestedStringMap(np.Object, "spec", "podSelector", "matchLabels"); sel["app.kubernetes.io/name"] != "remora" || sel["app.kubernetes.io/instance"] != "remora" {
				t.Errorf("podSelector %v", sel)
			}
			rules, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
			var got []string
			for _, r := range rules {
				r := r.(map[string]any)
				ports, _ := r["ports"].([]any)
				s := ""
				for _, p := range ports {
					s += fmt.Sprint(p.(map[string]any)["port"])
				}
				from, _ := r["from"].([]any)
				for _, f := range from {
					cidr, _, _ := unstructured.NestedString(f.(map[string]any), "ipBlock", "cidr")
					s += " " + cidr
				}
				got = append(got, s)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("ingress %v, want %v", got, tc.want)
			}
		})
	}
}

// storage.url sets any default storage; storage.volume gives every sidecar a
// volume and, without a url, backs up to it.
func TestRenderStorage(t *testing.T) {
	args := func(set ...string) string {
		dep := render(t, set...)["Deployment/remora-webhook"]
		cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		return toString(cs[0].(map[string]any)["args"])
	}
	for _, tc := range []struct {
		set  []string
		want []string
	}{
		{[]string{"--set", "storage.url=sftp://backup@nas:22/srv/backups#days=7"}, []string{"--default-storage=sftp://backup@nas:22/srv/backups#days=7"}},
		{[]string{"--set-json", `storage.volume={"nfs":{"server":"nfs.example","path":"/exports"}}`},
			[]string{`--backup-volume={"nfs":{"path":"/exports","server":"nfs.example"}}`, "--default-storage=file:///var/lib/remora/backups"}},
		{[]string{"--set", "storage.s3.bucket=b", "--set", "storage.url=gs://bucket/prefix"}, []string{"--default-storage=gs://bucket/prefix"}},
	} {
		got := args(tc.set...)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%v: args lack %s:\n%s", tc.set, w, got)
			}
		}
	}
}

// webhook.restoreAcrossNamespaces reaches the webhook's flag; off by default.
func TestRenderRestoreAcrossNamespaces(t *testing.T) {
	for set, want := range map[string]string{"": "--restore-across-namespaces=false", "true": "--restore-across-namespaces=true"} {
		var args []string
		if set != "" {
			args = []string{"--set", "webhook.restoreAcrossNamespaces=" + set}
		}
		dep := render(t, args...)["Deployment/remora-webhook"]
		cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		if got := toString(cs[0].(map[string]any)["args"]); !strings.Contains(got, want) {
			t.Errorf("set %q: args lack %s: %s", set, want, got)
		}
	}
}

// TestRenderEvents: no events RBAC by default; per listed namespace a Role
// with events create only, bound to that namespace's service accounts.
func TestRenderEvents(t *testing.T) {
	if objs := render(t, "--set", "storage.s3.bucket=b"); objs["Role/remora-events"] != nil {
		t.Fatal("events RBAC rendered without namespaces")
	}
	objs := render(t, "--set", "storage.s3.bucket=b", "--set", "events.namespaces={shop}")
	role, rb := objs["Role/remora-events"], objs["RoleBinding/remora-events"]
	if role == nil || rb == nil || role.GetNamespace() != "shop" || rb.GetNamespace() != "shop" {
		t.Fatalf("role %v binding %v", role, rb)
	}
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	subjects, _, _ := unstructured.NestedSlice(rb.Object, "subjects")
	if fmt.Sprint(rules) != "[map[apiGroups:[] resources:[events] verbs:[create]]]" ||
		fmt.Sprint(subjects) != "[map[apiGroup:rbac.authorization.k8s.io kind:Group name:system:serviceaccounts:shop]]" {
		t.Fatalf("rules %v, subjects %v", rules, subjects)
	}
}
