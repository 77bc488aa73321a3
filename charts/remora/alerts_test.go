package chart

import (
	"encoding/json"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"remora.dev/remora/internal/testenv"
)

// A promtool rule test file (promtool test rules), written as JSON.
type (
	promTestFile struct {
		RuleFiles          []string        `json:"rule_files"`
		EvaluationInterval string          `json:"evaluation_interval"`
		Tests              []promTestGroup `json:"tests"`
	}
	promTestGroup struct {
		Name        string          `json:"name"`
		Interval    string          `json:"interval"`
		InputSeries []promSeries    `json:"input_series"`
		AlertTests  []promAlertTest `json:"alert_rule_test"`
	}
	promSeries struct {
		Series string `json:"series"`
		Values string `json:"values"`
	}
	promAlertTest struct {
		EvalTime  string      `json:"eval_time"`
		Alertname string      `json:"alertname"`
		ExpAlerts []promAlert `json:"exp_alerts"`
	}
	promAlert struct {
		ExpLabels      map[string]string `json:"exp_labels"`
		ExpAnnotations map[string]string `json:"exp_annotations"`
	}
)

// An alertCase is input series (selector: promtool values, one a minute)
// and what the alerts do at given times.
type alertCase struct {
	name   string
	series map[string]string
	checks []alertCheck
}

type alertCheck struct {
	at    time.Duration
	alert string // "": every alert, none firing
	fire  []fired
}

// fired is one firing alert: its labels besides alertname and the rule's
// own, and its summary. The description is the rule's, which has no
// template.
type fired struct {
	labels  map[string]string
	summary string
}

// rule is one alerting rule of the chart's PrometheusRule.
type rule struct {
	labels, annotations map[string]string
}

// TestAlerts runs every alert of the chart's PrometheusRule, as rendered,
// through promtool: with series scraped from a real agent (after a backup,
// after a failed run, with invalid annotations, and as time passes with no
// new backup), and with synthetic series for what an agent beside a test
// database does not go through (a destination failing, WAL, drills, the
// webhook). Each alert fires in some case and stays quiet for a healthy agent.
func TestAlerts(t *testing.T) {
	promtool := testenv.Promtool(t)
	spec, rules := renderedRules(t)
	scrapes := scrapeAgent(t)
	checkNames(t, "alerts", ruleExprs(spec))
	cases := slices.Concat(scrapedCases(scrapes), backupCases(scrapes.healthy), walCases(scrapes.healthy), webhookCases())
	for name := range rules {
		if !slices.ContainsFunc(cases, func(c alertCase) bool { return firesIn(c, name) }) {
			t.Errorf("no case in which %s fires", name)
		}
	}
	dir := t.TempDir()
	writeJSON(t, filepath.Join(dir, "rules.json"), spec)
	file := promTestFile{RuleFiles: []string{"rules.json"}, EvaluationInterval: "1m"}
	for _, c := range cases {
		file.Tests = append(file.Tests, c.promTest(rules))
	}
	writeJSON(t, filepath.Join(dir, "tests.json"), file)
	cmd := exec.Command(promtool, "test", "rules", "tests.json")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// renderedRules renders the chart with the rule on and returns the
// PrometheusRule's spec and its alerts by name.
func renderedRules(t *testing.T) (map[string]any, map[string]rule) {
	t.Helper()
	pr := render(t, "--set", "monitoring.prometheusRule.enabled=true")["PrometheusRule/remora"]
	if pr == nil {
		t.Fatal("no PrometheusRule")
	}
	spec, _, _ := unstructured.NestedMap(pr.Object, "spec")
	rules := map[string]rule{}
	groups, _, _ := unstructured.NestedSlice(spec, "groups")
	for _, g := range groups {
		rs, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rs {
			r := r.(map[string]any)
			labels, _, _ := unstructured.NestedStringMap(r, "labels")
			ann, _, _ := unstructured.NestedStringMap(r, "annotations")
			rules[r["alert"].(string)] = rule{labels: labels, annotations: ann}
		}
	}
	if len(rules) < 10 {
		t.Fatalf("%d alerts in the PrometheusRule", len(rules))
	}
	return spec, rules
}

func ruleExprs(spec map[string]any) []string {
	var out []string
	groups, _, _ := unstructured.NestedSlice(spec, "groups")
	for _, g := range groups {
		rs, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rs {
			out = append(out, r.(map[string]any)["expr"].(string))
		}
	}
	return out
}

func firesIn(c alertCase, alert string) bool {
	return slices.ContainsFunc(c.checks, func(ch alertCheck) bool { return ch.alert == alert && len(ch.fire) > 0 })
}

// promTest is c as a promtool test group; a check of every alert expects
// each to be quiet.
func (c alertCase) promTest(rules map[string]rule) promTestGroup {
	g := promTestGroup{Name: c.name, Interval: "1m"}
	for _, sel := range slices.Sorted(maps.Keys(c.series)) {
		g.InputSeries = append(g.InputSeries, promSeries{Series: sel, Values: c.series[sel]})
	}
	for _, ch := range c.checks {
		names := []string{ch.alert}
		if ch.alert == "" {
			names = slices.Sorted(maps.Keys(rules))
		}
		for _, name := range names {
			at := promTestAt(ch.at, name)
			for _, f := range ch.fire {
				labels := maps.Clone(f.labels)
				maps.Copy(labels, rules[name].labels)
				at.ExpAlerts = append(at.ExpAlerts, promAlert{ExpLabels: labels,
					ExpAnnotations: map[string]string{"summary": f.summary, "description": rules[name].annotations["description"]}})
			}
			g.AlertTests = append(g.AlertTests, at)
		}
	}
	return g
}

func promTestAt(at time.Duration, alert string) promAlertTest {
	return promAlertTest{EvalTime: model.Duration(at).String(), Alertname: alert, ExpAlerts: []promAlert{}}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// The labels a sidecar's series get from the PodMonitor, and a webhook's
// from the ServiceMonitor.
var (
	sidecarTarget = map[string]string{"job": "remora-system/remora-sidecars", "namespace": "shop", "pod": "db-0",
		"container": "remora", "endpoint": "remora-metrics", "instance": "10.0.0.7:9464"}
	webhookTarget = map[string]string{"job": "remora-webhook", "namespace": "remora-system", "pod": "remora-webhook-7d4b9-x2v8q",
		"container": "webhook", "endpoint": "metrics", "instance": "10.0.0.9:9464"}
)

// selector is name{labels}, the labels being target's with extra.
func selector(name string, target map[string]string, extra ...string) string {
	labels := maps.Clone(target)
	for i := 0; i+1 < len(extra); i += 2 {
		labels[extra[i]] = extra[i+1]
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+strconv.Quote(labels[k]))
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// steady is v for the length of any case here (27 hours of minutes).
func steady(v float64) string { return promValue(v) + "x1620" }

func promValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// fromScrape turns a scrape of the agent (Prometheus' text format) into
// input series held steady, with the sidecar's target labels. Timestamps
// (the *_timestamp_seconds gauges and the process' start) are moved by
// -base, so that the test's clock, which starts at 0, runs on from them; 0
// stays 0 (never). Summaries and histograms, which no alert reads, are left
// out.
func fromScrape(t *testing.T, text string, base float64) map[string]string {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse the scrape: %v\n%s", err, text)
	}
	series := map[string]string{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var v float64
			switch {
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Untyped != nil:
				v = m.GetUntyped().GetValue()
			default:
				continue
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			if v != 0 && (strings.HasSuffix(name, "_timestamp_seconds") || name == "process_start_time_seconds") {
				v -= base
			}
			var extra []string
			for _, l := range m.GetLabel() {
				extra = append(extra, l.GetName(), l.GetValue())
			}
			series[selector(name, sidecarTarget, extra...)] = steady(v)
		}
	}
	return series
}

// with is series with the named series of the sidecar's target set to
// values (name, values, ...).
func with(series map[string]string, set ...string) map[string]string {
	out := maps.Clone(series)
	for i := 0; i+1 < len(set); i += 2 {
		out[selector(set[i], sidecarTarget)] = set[i+1]
	}
	return out
}

// sidecarAlert is an alert on the sidecar's target with summary.
func sidecarAlert(summary string) []fired { return []fired{{labels: sidecarTarget, summary: summary}} }

// quiet checks that alert ("": every alert) does not fire at each of the
// times.
func quiet(alert string, at ...time.Duration) []alertCheck {
	var out []alertCheck
	for _, a := range at {
		out = append(out, alertCheck{at: a, alert: alert})
	}
	return out
}

func mustFloat(t *testing.T, s, what string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%s: %q: %v", what, s, err)
	}
	return v
}
