package chart

import (
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// scrapes are the agent's metrics as input series, at three moments.
type scrapes struct {
	healthy map[string]string // after a successful backup
	invalid map[string]string // with an invalid annotation
	failed  map[string]string // after a failed run
	notOurs map[string]string // after a run that was another member's turn, before any backup
}

// scrapeAgent runs `remora agent` beside a real PostgreSQL with the default
// schedule (daily), as tests/agentpod does, and scrapes it after a run that
// was a replica's turn (the server is a primary), after a backup, with an
// invalid annotation, and after a run that failed because the database was
// gone. The timestamps are moved so that the backup started at
// 1m of the test's clock.
func scrapeAgent(t *testing.T) scrapes {
	t.Helper()
	pg := testenv.StartPostgres(t)
	testenv.SeedOdd(t, pg, "odd")
	podinfo, socket := t.TempDir(), filepath.Join(testenv.SocketDir(t), "agent.sock")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	seen := map[string]string{"kubernetes.io/config.seen": "2026-11-24T10:00:00Z"}
	testenv.WriteDownwardAPI(t, podinfo, map[string]string{"remora.dev/member": "replica"})
	env := []string{"REMORA_STORAGE=file://" + t.TempDir(), "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_ANNOTATIONS=" + filepath.Join(podinfo, "annotations"),
		"REMORA_SOCKET=" + socket, "REMORA_METRICS_ADDR=" + metricsAddr}
	ag := clitest.StartAgent(t, remora, env, socket)

	if r := remora.Must(t, env, "backup", "--wait"); !strings.Contains(r.Stdout, "no backup") {
		t.Fatalf("a replica's turn on a primary: %s", r)
	}
	notOurs := testenv.Scrape(t, metricsAddr)
	testenv.WriteDownwardAPI(t, podinfo, seen)
	ag.WaitLog(t, `"msg":"configuration changed"`, 30*time.Second)
	remora.Must(t, env, "backup", "--wait")
	healthy := testenv.Scrape(t, metricsAddr)
	for _, name := range []string{"remora_backup_last_failure_timestamp_seconds", "remora_backup_duration_seconds",
		"remora_backup_destination_failures_total", "remora_config_valid", "process_start_time_seconds"} {
		if testenv.MetricValue(healthy, name) == "" {
			t.Errorf("the agent has no %s", name)
		}
	}
	if v := testenv.MetricValue(healthy, "remora_backup_schedule_interval_seconds"); v != "86400" {
		t.Errorf("schedule interval %q, want 86400 (daily)", v)
	}
	base := mustFloat(t, testenv.MetricValue(healthy, "remora_backup_last_success_timestamp_seconds"), "last success") - 60

	testenv.WriteDownwardAPI(t, podinfo, map[string]string{"remora.dev/schedule": "every day"})
	invalid := scrapeUntil(t, metricsAddr, "remora_config_valid", "0")
	testenv.WriteDownwardAPI(t, podinfo, seen)
	scrapeUntil(t, metricsAddr, "remora_config_valid", "1")

	pg.Kill()
	if r := remora.Run(t, env, "backup", "--wait"); r.Code == 0 {
		t.Fatalf("a backup with the database gone: %s", r)
	}
	failed := testenv.Scrape(t, metricsAddr)
	if ok, err := ag.Stop(syscall.SIGTERM, 10*time.Second); !ok || err != nil {
		t.Errorf("the agent's exit: %v, %v\n%s", ok, err, ag.Logs())
	}
	return scrapes{healthy: fromScrape(t, healthy, base), invalid: fromScrape(t, invalid, base), failed: fromScrape(t, failed, base),
		notOurs: fromScrape(t, notOurs, base)}
}

// scrapeUntil scrapes the agent at addr until metric has the value want.
func scrapeUntil(t *testing.T, addr, metric, want string) string {
	t.Helper()
	var text string
	testenv.WaitFor(t, metric+" = "+want, 30*time.Second, func() bool {
		text = testenv.Scrape(t, addr)
		return testenv.MetricValue(text, metric) == want
	})
	return text
}

// scrapedCases are the real agent's series as scraped, and as time passes
// with no new backup.
func scrapedCases(s scrapes) []alertCase {
	return []alertCase{
		{"a healthy agent, scraped after a backup", s.healthy, quiet("", 10*time.Minute, 12*time.Hour, 24*time.Hour)},
		{"the same scrape a day on, with no new backup: older than the daily schedule allows", s.healthy, append(
			quiet("RemoraBackupTooOld", 25*time.Hour+5*time.Minute),
			alertCheck{at: 25*time.Hour + 21*time.Minute, alert: "RemoraBackupTooOld",
				fire: sidecarAlert("No backup of shop/db-0 for 1d 1h 20m 0s, longer than its schedule allows")})},
		{"scraped after a run that was another member's turn, a day on", s.notOurs, quiet("", 2*time.Hour, 26*time.Hour)},
		{"scraped after a failed run", s.failed, []alertCheck{{at: time.Minute, alert: "RemoraBackupFailed",
			fire: sidecarAlert("The last backup run of shop/db-0 failed")}}},
		{"scraped with an invalid annotation", s.invalid, append(quiet("RemoraConfigInvalid", 4*time.Minute),
			alertCheck{at: 6 * time.Minute, alert: "RemoraConfigInvalid", fire: sidecarAlert("The remora.dev annotations of shop/db-0 are not valid")})},
	}
}

// backupCases change the healthy agent's series as a failure would.
func backupCases(healthy map[string]string) []alertCase {
	hourly := "60x59 3660x59 7260x59 10860x59 14460x59 18060x59 21660x59" // a backup each hour
	drillPods := map[string]string{}
	for pod, run := range map[string][]float64{"db-0": {7200, 3600}, "db-1": {7200, 7200}, "db-2": {7200}} {
		drillPods[selector("remora_drill_last_run_timestamp_seconds", sidecarTarget, "pod", pod)] = steady(run[0])
		if len(run) > 1 { // db-2 never passed one
			drillPods[selector("remora_drill_last_success_timestamp_seconds", sidecarTarget, "pod", pod)] = steady(run[1])
		}
	}
	onPod := func(pod, summary string) fired {
		l := maps.Clone(sidecarTarget)
		l["pod"] = pod
		return fired{labels: l, summary: summary}
	}
	return []alertCase{
		{"no run ever, the agent up for longer than an hourly schedule allows", with(healthy,
			"remora_backup_last_success_timestamp_seconds", steady(0), "remora_backup_last_run_timestamp_seconds", steady(0),
			"process_start_time_seconds", steady(0),
			"remora_backup_schedule_interval_seconds", steady(3600)),
			append(quiet("RemoraBackupTooOld", 2*time.Hour+5*time.Minute), alertCheck{at: 2*time.Hour + 15*time.Minute, alert: "RemoraBackupTooOld",
				fire: sidecarAlert("No backup of shop/db-0 for 2h 15m 0s, longer than its schedule allows")})},
		{"an hourly schedule kept", with(healthy, "remora_backup_schedule_interval_seconds", steady(3600),
			"remora_backup_last_success_timestamp_seconds", hourly), quiet("", time.Hour, 3*time.Hour, 6*time.Hour)},
		{"a destination failing", with(healthy, "remora_backup_destination_failures_total", "0 0 0 1x1620"), append(
			quiet("RemoraDestinationFailing", 2*time.Minute, 90*time.Minute),
			alertCheck{at: 5 * time.Minute, alert: "RemoraDestinationFailing", fire: sidecarAlert("A storage destination of shop/db-0 did not get its backup")})},
		{"drills: failed, passed, never passed", drillPods, []alertCheck{{at: time.Minute, alert: "RemoraDrillFailed", fire: []fired{
			onPod("db-0", "The last restore drill of shop/db-0 failed"), onPod("db-2", "The last restore drill of shop/db-2 failed")}}}},
	}
}

// walCases add a WAL streamer's series to the healthy agent's (the scraped
// agent does not stream WAL).
func walCases(healthy map[string]string) []alertCase {
	wal := func(streaming, lag, gaps string) map[string]string {
		return with(healthy, "remora_wal_streaming", streaming, "remora_wal_archive_lag_seconds", lag, "remora_wal_gaps_total", gaps,
			"remora_wal_archive_lag_bytes", steady(0), "remora_wal_slot_retained_bytes", steady(16<<20))
	}
	return []alertCase{
		{"WAL streamed and archived", wal(steady(1), steady(0), steady(0)), quiet("", 30*time.Minute, 25*time.Hour)},
		{"WAL archive falling behind", wal(steady(1), "0+60x40", steady(0)), append(quiet("RemoraWALArchiveLagging", 20*time.Minute),
			alertCheck{at: 22 * time.Minute, alert: "RemoraWALArchiveLagging", fire: sidecarAlert("WAL (or binary log) of shop/db-0 written 22m 0s ago is not archived yet")})},
		{"WAL streamer disconnected", wal("1x5 0x30", steady(0), steady(0)), append(quiet("RemoraWALNotStreaming", 15*time.Minute),
			alertCheck{at: 17 * time.Minute, alert: "RemoraWALNotStreaming", fire: sidecarAlert("The WAL or binary log streamer of shop/db-0 is not connected to the server")})},
		{"a gap in the WAL archive", wal(steady(1), steady(0), "0x5 1x60"), append(quiet("RemoraWALGap", 3*time.Minute),
			alertCheck{at: 7 * time.Minute, alert: "RemoraWALGap", fire: sidecarAlert("The WAL or binary log archive of shop/db-0 has a gap")})},
	}
}

// webhookCases are two webhook replicas' counts of pods not injected, and
// the API server's count of admissions without the webhook.
func webhookCases() []alertCase {
	const notInjected = "remora_webhook_pods_not_injected_total"
	other := maps.Clone(webhookTarget)
	other["pod"], other["instance"] = "remora-webhook-7d4b9-k5m2c", "10.0.0.10:9464"
	apiserver := map[string]string{"job": "apiserver", "instance": "10.0.0.1:6443", "type": "admit"}
	aggregated := func(reason string) fired {
		l := maps.Clone(webhookTarget)
		delete(l, "pod")
		delete(l, "instance")
		l["reason"] = reason
		return fired{labels: l, summary: "Pods in labelled namespaces were admitted without the backup sidecar (" + reason + ")"}
	}
	return []alertCase{
		{"pods not injected", map[string]string{
			selector(notInjected, webhookTarget, "reason", "busy"):         "0x5 1x60",
			selector(notInjected, other, "reason", "busy"):                 "0x5 2x60",
			selector(notInjected, other, "reason", "runs_as_root"):         "0x8 1x60",
			selector(notInjected, webhookTarget, "reason", "not_detected"): "0+1x65", // pods that are no database
			selector(notInjected, other, "reason", "opted_out"):            "0+1x65",
		}, append(quiet("RemoraPodsNotInjected", 3*time.Minute), alertCheck{at: 10 * time.Minute, alert: "RemoraPodsNotInjected",
			fire: []fired{aggregated("busy"), aggregated("runs_as_root")}})},
		{"the API server failing open", map[string]string{
			selector("apiserver_admission_webhook_fail_open_count", apiserver, "name", "inject.remora.dev"): "0x5 3x60",
			selector("apiserver_admission_webhook_fail_open_count", apiserver, "name", "other.example.com"): "0+1x65",
		}, append(quiet("RemoraWebhookFailedOpen", 3*time.Minute), alertCheck{at: 10 * time.Minute, alert: "RemoraWebhookFailedOpen",
			fire: []fired{{labels: map[string]string{"name": "inject.remora.dev"}, summary: "The API server admitted pods without calling the remora webhook"}}})},
	}
}
