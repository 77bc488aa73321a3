package chart

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/sidecar"
)

// monitoringOn turns every monitoring object on.
var monitoringOn = []string{"--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.serviceMonitor.enabled=true",
	"--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.dashboard.enabled=true"}

var monitoringObjects = []string{"PodMonitor/remora-sidecars", "ServiceMonitor/remora-webhook", "PrometheusRule/remora", "ConfigMap/remora-dashboard"}

// The monitoring objects are off by default, each comes with its value, and
// the chart lints with all of them on.
func TestRenderMonitoringOff(t *testing.T) {
	objs := render(t)
	for _, k := range monitoringObjects {
		if objs[k] != nil {
			t.Errorf("%s rendered by default", k)
		}
	}
	for i, k := range monitoringObjects {
		objs := render(t, monitoringOn[2*i:2*i+2]...)
		for _, other := range monitoringObjects {
			if got := objs[other] != nil; got != (other == k) {
				t.Errorf("%s: %s rendered: %v", monitoringOn[2*i+1], other, got)
			}
		}
	}
	args := append([]string{"lint", ".", "--strict", "--set", "storage.s3.bucket=backups"}, monitoringOn...)
	if out, err := exec.Command(helm(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("helm lint with monitoring on: %v\n%s", err, out)
	}
}

// The monitors scrape the ports the sidecar and the webhook serve metrics
// on, the rule's spec is files/alerts.yaml and the dashboard's ConfigMap
// holds files/dashboard.json under the label Grafana's sidecar looks for.
func TestRenderMonitoring(t *testing.T) {
	objs := render(t, append(monitoringOn, "--set", "monitoring.podMonitor.namespaces={shop,billing}")...)
	pm := objs["PodMonitor/remora-sidecars"]
	eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != sidecar.MetricsPortName {
		t.Errorf("PodMonitor endpoints %v, want the port %s", eps, sidecar.MetricsPortName)
	}
	if ns, _, _ := unstructured.NestedStringSlice(pm.Object, "spec", "namespaceSelector", "matchNames"); !slices.Equal(ns, []string{"shop", "billing"}) {
		t.Errorf("PodMonitor namespaces %v", ns)
	}
	if all, _, _ := unstructured.NestedBool(render(t, monitoringOn...)["PodMonitor/remora-sidecars"].Object, "spec", "namespaceSelector", "any"); !all {
		t.Error("PodMonitor without namespaces: not every namespace")
	}
	sm, svc := objs["ServiceMonitor/remora-webhook"], objs["Service/remora-webhook"]
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range sel {
		if svc.GetLabels()[k] != v {
			t.Errorf("the ServiceMonitor's selector %v does not select the webhook's Service %v", sel, svc.GetLabels())
		}
	}
	eps, _, _ = unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(eps) != 1 || !strings.Contains(toString(ports), "name "+eps[0].(map[string]any)["port"].(string)+" ") {
		t.Errorf("ServiceMonitor endpoints %v, Service ports %v", eps, ports)
	}
	var want map[string]any
	if err := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(readFile(t, "files/alerts.yaml")), 4096).Decode(&want); err != nil {
		t.Fatal(err)
	}
	if spec := objs["PrometheusRule/remora"].Object["spec"]; !reflect.DeepEqual(spec, want) {
		t.Errorf("the PrometheusRule's spec is not files/alerts.yaml:\n%v", spec)
	}
	cm := objs["ConfigMap/remora-dashboard"]
	data, _, _ := unstructured.NestedString(cm.Object, "data", "remora.json")
	if cm.GetLabels()["grafana_dashboard"] != "1" || data != strings.TrimSpace(string(readFile(t, "files/dashboard.json"))) {
		t.Errorf("dashboard ConfigMap: labels %v, %d bytes of data", cm.GetLabels(), len(data))
	}
}

// The dashboard is valid JSON and every query in it asks for metrics that
// exist.
func TestDashboard(t *testing.T) {
	var dash struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readFile(t, "files/dashboard.json"), &dash); err != nil {
		t.Fatalf("files/dashboard.json: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			exprs = append(exprs, q["query"].(string))
		}
	}
	if dash.UID == "" || len(exprs) < 20 {
		t.Fatalf("uid %q, %d queries", dash.UID, len(exprs))
	}
	checkNames(t, "dashboard", exprs)
}

// knownMetrics are the names a query may use: the agent's and the webhook's
// (read from their source), the drills' (named by the shared contract, and
// added to agent/metrics.go with the drills), the Go process collector's and
// the API server's count of admissions it let through without the webhook.
func knownMetrics(t *testing.T) map[string]bool {
	known := map[string]bool{"process_start_time_seconds": true, "process_resident_memory_bytes": true,
		"apiserver_admission_webhook_fail_open_count": true,
		"remora_drill_last_success_timestamp_seconds": true, "remora_drill_last_run_timestamp_seconds": true,
		"remora_drill_failures_total": true, "remora_drill_duration_seconds": true}
	for _, f := range []string{"agent/metrics.go", "webhook/handler.go"} {
		file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(testenv.RepoRoot(), f), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, _ := strconv.Unquote(lit.Value); metricName.MatchString(s) && strings.HasPrefix(s, "remora_") {
					known[s] = true
				}
			}
			return true
		})
	}
	if !known["remora_backup_last_success_timestamp_seconds"] || !known["remora_webhook_admissions_total"] {
		t.Fatalf("metric names not found in the source: %v", known)
	}
	return known
}

var (
	metricName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	// queried are the metric names in a query: identifiers with the
	// prefixes of the metrics the chart's objects use.
	queried = regexp.MustCompile(`\b(?:remora|apiserver|process|go)_[a-z0-9_]+\b`)
)

// checkNames fails the test for a metric in exprs that does not exist. A
// histogram's series are its name with _bucket, _sum or _count.
func checkNames(t *testing.T, what string, exprs []string) {
	t.Helper()
	known := knownMetrics(t)
	for _, e := range exprs {
		for _, name := range queried.FindAllString(e, -1) {
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && known[b] {
					base = b
				}
			}
			if !known[base] {
				t.Errorf("%s: %s is no metric of remora's: %s", what, name, e)
			}
		}
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
