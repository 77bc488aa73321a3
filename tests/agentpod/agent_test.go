package agentpod

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/control"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// logLine decodes one line of the agent's JSON log.
func logLine(t *testing.T, line string) (time.Time, map[string]any) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("agent log line %q: %v", line, err)
	}
	s, _ := m["time"].(string)
	when, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("agent log line %q: time: %v", line, err)
	}
	return when, m
}

// TestAgentPod runs the agent as a sidecar would: beside a real PostgreSQL on
// loopback, a temp directory as the shared volume, and a downward-API
// directory the test updates as the kubelet does.
func TestAgentPod(t *testing.T) {
	pg := testenv.StartPostgres(t)
	testenv.SeedOdd(t, pg, "odd")
	volume := t.TempDir()
	podinfo := t.TempDir()
	sockDir := testenv.SocketDir(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cert, caFile := testenv.SelfSigned(t)
	mail := testenv.StartSMTP(t, cert)
	hook := testenv.StartReceiver(t)
	smtpHost, smtpPort, _ := net.SplitHostPort(mail.Addr)
	testenv.WriteDownwardAPI(t, podinfo, map[string]string{"kubernetes.io/config.seen": "2026-11-24T10:00:00Z", "remora.dev/retention": "last=5"})
	env := []string{"REMORA_STORAGE=file://" + volume, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_ANNOTATIONS=" + filepath.Join(podinfo, "annotations"),
		"REMORA_SOCKET=" + filepath.Join(sockDir, "agent.sock"), "REMORA_METRICS_ADDR=" + metricsAddr,
		"REMORA_NOTIFY_WEBHOOK_URL=" + hook.URL + "/hooks/" + testenv.Canary, "REMORA_SMTP_HOST=" + smtpHost, "REMORA_SMTP_PORT=" + smtpPort,
		"REMORA_SMTP_USERNAME=remora", "REMORA_SMTP_PASSWORD=" + testenv.Canary, "REMORA_SMTP_FROM=remora@example.com",
		"REMORA_SMTP_TO=ops@example.com", "REMORA_SMTP_CA_FILE=" + caFile}

	ag := clitest.StartAgent(t, remora, env, filepath.Join(sockDir, "agent.sock"))
	st := clitest.Status(t, remora, env)
	if st.Schedule != "H H * * *" || st.Retention != "last=5" || st.NextRun.IsZero() || st.ConfigError != "" {
		t.Fatalf("initial status: %+v", st)
	}

	// A changed annotation is applied within 2 seconds: the agent logs the
	// change when it applies it, stamped by its own clock, so the time the
	// test takes to see it does not count.
	testenv.WriteDownwardAPI(t, podinfo, map[string]string{"remora.dev/schedule": "@every 1h", "remora.dev/retention": "last=5"})
	changed := time.Now()
	applied, fields := logLine(t, ag.WaitLog(t, `"msg":"configuration changed"`, 30*time.Second))
	if fields["schedule"] != "@every 1h" {
		t.Fatalf("the change logged is not the new schedule: %v", fields)
	}
	if d := applied.Sub(changed); d > 2*time.Second {
		t.Errorf("the new schedule was applied %s after the change, want within 2s", d)
	}
	st = clitest.Status(t, remora, env)
	if st.Schedule != "@every 1h" {
		t.Fatalf("the agent logged the new schedule but its status says %+v\n%s", st, ag.Logs())
	}
	if until := time.Until(st.NextRun); until < 59*time.Minute || until > 61*time.Minute {
		t.Errorf("next run in %s, want about 1h", until)
	}

	// An invalid value keeps the last good configuration and says so.
	testenv.WriteDownwardAPI(t, podinfo, map[string]string{"remora.dev/schedule": "every day", "remora.dev/retention": "last=5"})
	ag.WaitLog(t, "annotations are not valid", 30*time.Second)
	st = clitest.Status(t, remora, env)
	if !strings.Contains(st.ConfigError, `remora.dev/schedule="every day"`) || st.Schedule != "@every 1h" {
		t.Fatalf("status after a bad annotation: %+v", st)
	}
	m := testenv.Scrape(t, metricsAddr)
	if testenv.MetricValue(m, "remora_config_valid") != "0" || testenv.MetricValue(m, "remora_config_errors_total") != "1" {
		t.Errorf("config metrics:\n%s", m)
	}

	// remora backup --wait through the socket.
	r := remora.Must(t, env, "backup", "--wait")
	if !strings.Contains(r.Stdout, "complete") || !strings.Contains(r.Stderr, "started by the agent") {
		t.Fatalf("backup --wait: %s", r)
	}
	items := clitest.List(t, remora, env)
	if len(items) != 1 || !slices.Contains(items[0].Databases, "odd") {
		t.Fatalf("list after backup --wait: %+v", items)
	}
	st = clitest.Status(t, remora, env)
	if st.Last == nil || !st.Last.OK || st.Last.ID != items[0].ID || st.LastSuccess.IsZero() {
		t.Fatalf("status after the backup: %+v", st.Last)
	}
	m = testenv.Scrape(t, metricsAddr)
	for _, name := range []string{"remora_backup_last_success_timestamp_seconds", "remora_backup_duration_seconds", "remora_backup_size_bytes",
		"remora_backup_failures_total", "remora_backup_bytes_read_total", "remora_backup_runs_skipped_total", "remora_config_errors_total"} {
		if testenv.MetricValue(m, name) == "" {
			t.Errorf("metric %s missing", name)
		}
	}
	if v := testenv.MetricValue(m, "remora_backup_last_success_timestamp_seconds"); v == "0" {
		t.Errorf("last success = %s", v)
	}

	// A failed run counts.
	pg.Kill()
	if r := remora.Run(t, env, "backup", "--wait"); r.Code == 0 || !strings.Contains(r.Stderr, "failed") {
		t.Fatalf("backup with the database down: %s", r)
	}
	if v := testenv.MetricValue(testenv.Scrape(t, metricsAddr), "remora_backup_failures_total"); v != "1" {
		t.Errorf("failures_total = %s", v)
	}
	// One e-mail (over STARTTLS, logged in) and one POST, for the failure
	// only, and the password in none of them. Both arrive while the agent
	// runs; it sends them in the background and waits for them when it
	// stops, so once it has exited nothing more can come: count then.
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		mails, _ := mail.Received()
		if len(mails) > 0 && len(hook.Received()) > 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no notification of the failure within 10s:\n%s", ag.Logs())
		}
	}

	// SIGTERM: the agent stops and removes its socket.
	stopAgent(t, ag, 10*time.Second)
	if _, err := os.Stat(filepath.Join(sockDir, "agent.sock")); err == nil {
		t.Error("the control socket is left behind")
	}
	mails, logins := mail.Received()
	posts := hook.Received()
	if len(mails) != 1 || len(posts) != 1 || len(logins) != 1 || !strings.Contains(logins[0], "remora") {
		t.Fatalf("notifications: %d mails, %d posts, logins %d", len(mails), len(posts), len(logins))
	}
	if !strings.Contains(mails[0], "FAILED") || !strings.Contains(posts[0], `"text":"Remora: backup of shop/db-0 (postgres) FAILED`) {
		t.Errorf("notification contents:\n%s\n%s", mails[0], posts[0])
	}
	testenv.NoCanary(t, "the e-mail", mails[0])
	testenv.NoCanary(t, "the webhook body", posts[0])
}

// TestAgentStopsDuringBackup: SIGTERM while the agent backs up interrupts
// the backup, leaves nothing that looks like one, and the agent exits.
func TestAgentStopsDuringBackup(t *testing.T) {
	pg := testenv.StartPostgres(t)
	testenv.SeedRandom(t, pg, "rnd", 64)
	volume := t.TempDir()
	sockDir := testenv.SocketDir(t)
	env := []string{"REMORA_STORAGE=file://" + volume, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd", "REMORA_COMPRESSION=none",
		"REMORA_ANNOTATIONS=" + filepath.Join(t.TempDir(), "none"), "REMORA_SOCKET=" + filepath.Join(sockDir, "agent.sock"), "REMORA_METRICS_ADDR="}
	ag := clitest.StartAgent(t, remora, env, filepath.Join(sockDir, "agent.sock"))
	client, err := control.Dial(filepath.Join(sockDir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := client.Backup(context.Background()); err != nil || !s.Started {
		t.Fatalf("backup: %+v %v", s, err)
	}
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		st, err := client.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Running != nil && st.Running.Progress.BytesStored > 1<<20 {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the backup never got going: %+v", st)
		}
	}
	stopAgent(t, ag, 20*time.Second)
	if !strings.Contains(ag.Logs(), "interrupting the running backup") {
		t.Errorf("logs:\n%s", ag.Logs())
	}
	if left := testenv.FilesUnder(volume); len(left) != 0 {
		t.Fatalf("the interrupted backup left %v", left)
	}
}
