package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/agent"
	"remora.dev/remora/internal/testenv"
)

// writeDownwardAPI writes the annotations as the kubelet does: a new
// timestamped directory, a ..data_tmp symlink to it renamed over ..data, and
// the file itself a symlink through ..data.
func writeDownwardAPI(t *testing.T, dir string, ann map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, strconv.Quote(ann[k]))
	}
	ts := "..2026_11_24_" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ts, "annotations"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "annotations")); err != nil {
		os.Symlink("..data/annotations", filepath.Join(dir, "annotations"))
	}
	if old != "" {
		os.RemoveAll(filepath.Join(dir, old))
	}
}

func statusJSON(t *testing.T, env []string) agent.Status {
	t.Helper()
	r := mustRemora(t, env, "status", "--json")
	var st agent.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return st
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	noCanary(t, "/metrics", string(b))
	return string(b)
}

func metricValue(metrics, name string) string {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// syncBuffer is a buffer safe to write from a process's output copier while
// the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// agentProc is a `remora agent` started by a test.
type agentProc struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

// startAgent starts `remora agent` with env and waits until its control
// socket answers. Its logs are checked for the canary when the test ends.
func startAgent(t *testing.T, env []string, socket string) *agentProc {
	t.Helper()
	a := &agentProc{cmd: exec.Command(remoraBin, "agent"), logs: &syncBuffer{}, done: make(chan error, 1)}
	a.cmd.Env = append(os.Environ(), env...)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
		a.done <- nil
		noCanary(t, "agent logs", a.logs.String())
	})
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if c, err := agent.Dial(socket); err == nil {
			if _, err := c.Status(context.Background()); err == nil {
				return a
			}
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the agent did not start:\n%s", a.logs)
		}
	}
}

// stop sends SIGTERM and waits up to limit for the agent to exit.
func (a *agentProc) stop(t *testing.T, limit time.Duration) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		a.done <- err
		if err != nil {
			t.Errorf("agent exit: %v\n%s", err, a.logs)
		}
	case <-time.After(limit):
		t.Fatalf("the agent did not stop within %s of SIGTERM:\n%s", limit, a.logs)
	}
}

// TestAgentPod runs the agent as a sidecar would: beside a real PostgreSQL on
// loopback, a temp directory as the shared volume, and a downward-API
// directory the test updates as the kubelet does.
func TestAgentPod(t *testing.T) {
	pg := testenv.StartPostgres(t)
	seedOdd(t, pg, "odd")
	volume := t.TempDir()
	podinfo := t.TempDir()
	sockDir, _ := os.MkdirTemp("", "rsock")
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cert, caFile := selfSigned(t)
	mail := startSMTP(t, cert)
	hook := startReceiver(t)
	smtpHost, smtpPort, _ := net.SplitHostPort(mail.addr)
	writeDownwardAPI(t, podinfo, map[string]string{"kubernetes.io/config.seen": "2026-11-24T10:00:00Z", "remora.dev/retention": "last=5"})
	env := []string{"REMORA_STORAGE=file://" + volume, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_ANNOTATIONS=" + filepath.Join(podinfo, "annotations"),
		"REMORA_SOCKET=" + filepath.Join(sockDir, "agent.sock"), "REMORA_METRICS_ADDR=" + metricsAddr,
		"REMORA_NOTIFY_WEBHOOK_URL=" + hook.srv.URL + "/hooks/" + testenv.Canary, "REMORA_SMTP_HOST=" + smtpHost, "REMORA_SMTP_PORT=" + smtpPort,
		"REMORA_SMTP_USERNAME=remora", "REMORA_SMTP_PASSWORD=" + testenv.Canary, "REMORA_SMTP_FROM=remora@example.com",
		"REMORA_SMTP_TO=ops@example.com", "REMORA_SMTP_CA_FILE=" + caFile}

	ag := startAgent(t, env, filepath.Join(sockDir, "agent.sock"))
	logs := ag.logs
	st := statusJSON(t, env)
	if st.Schedule != "H H * * *" || st.Retention != "last=5" || st.NextRun.IsZero() || st.ConfigError != "" {
		t.Fatalf("initial status: %+v", st)
	}

	// A changed annotation is applied within 2 seconds.
	writeDownwardAPI(t, podinfo, map[string]string{"remora.dev/schedule": "@every 1h", "remora.dev/retention": "last=5"})
	changed := time.Now()
	for {
		st = statusJSON(t, env)
		if st.Schedule == "@every 1h" {
			break
		}
		if time.Since(changed) > 2*time.Second {
			t.Fatalf("the new schedule was not applied within 2s: %+v\n%s", st, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if until := time.Until(st.NextRun); until < 59*time.Minute || until > 61*time.Minute {
		t.Errorf("next run in %s, want about 1h", until)
	}

	// An invalid value keeps the last good configuration and says so.
	writeDownwardAPI(t, podinfo, map[string]string{"remora.dev/schedule": "every day", "remora.dev/retention": "last=5"})
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		st = statusJSON(t, env)
		if st.ConfigError != "" || time.Since(start) > 5*time.Second {
			break
		}
	}
	if !strings.Contains(st.ConfigError, `remora.dev/schedule="every day"`) || st.Schedule != "@every 1h" {
		t.Fatalf("status after a bad annotation: %+v", st)
	}
	m := scrape(t, metricsAddr)
	if metricValue(m, "remora_config_valid") != "0" || metricValue(m, "remora_config_errors_total") != "1" {
		t.Errorf("config metrics:\n%s", m)
	}

	// remora backup --wait through the socket.
	r := mustRemora(t, env, "backup", "--wait")
	if !strings.Contains(r.stdout, "complete") || !strings.Contains(r.stderr, "started by the agent") {
		t.Fatalf("backup --wait: %s", r)
	}
	items := listJSON(t, env)
	if len(items) != 1 || !slices.Contains(items[0].Databases, "odd") {
		t.Fatalf("list after backup --wait: %+v", items)
	}
	st = statusJSON(t, env)
	if st.Last == nil || !st.Last.OK || st.Last.ID != items[0].ID || st.LastSuccess.IsZero() {
		t.Fatalf("status after the backup: %+v", st.Last)
	}
	m = scrape(t, metricsAddr)
	for _, name := range []string{"remora_backup_last_success_timestamp_seconds", "remora_backup_duration_seconds", "remora_backup_size_bytes",
		"remora_backup_failures_total", "remora_backup_bytes_read_total", "remora_backup_runs_skipped_total", "remora_config_errors_total"} {
		if metricValue(m, name) == "" {
			t.Errorf("metric %s missing", name)
		}
	}
	if v := metricValue(m, "remora_backup_last_success_timestamp_seconds"); v == "0" {
		t.Errorf("last success = %s", v)
	}

	// A failed run counts.
	pg.Kill()
	if r := remora(t, env, "backup", "--wait"); r.code == 0 || !strings.Contains(r.stderr, "failed") {
		t.Fatalf("backup with the database down: %s", r)
	}
	if v := metricValue(scrape(t, metricsAddr), "remora_backup_failures_total"); v != "1" {
		t.Errorf("failures_total = %s", v)
	}
	// One e-mail (over STARTTLS, logged in) and one POST, for the failure
	// only, and the password in none of them.
	var mails, logins, posts []string
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		mails, logins = mail.received()
		posts = hook.received()
		if len(mails) > 0 && len(posts) > 0 {
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	mails, logins = mail.received()
	posts = hook.received()
	if len(mails) != 1 || len(posts) != 1 || len(logins) != 1 || !strings.Contains(logins[0], "remora") {
		t.Fatalf("notifications: %d mails, %d posts, logins %d", len(mails), len(posts), len(logins))
	}
	if !strings.Contains(mails[0], "FAILED") || !strings.Contains(posts[0], `"text":"Remora: backup of shop/db-0 (postgres) FAILED`) {
		t.Errorf("notification contents:\n%s\n%s", mails[0], posts[0])
	}
	noCanary(t, "the e-mail", mails[0])
	noCanary(t, "the webhook body", posts[0])

	// SIGTERM: the agent stops and removes its socket.
	ag.stop(t, 10*time.Second)
	if _, err := os.Stat(filepath.Join(sockDir, "agent.sock")); err == nil {
		t.Error("the control socket is left behind")
	}
}

// TestAgentStopsDuringBackup: SIGTERM while the agent backs up interrupts
// the backup, leaves nothing that looks like one, and the agent exits.
func TestAgentStopsDuringBackup(t *testing.T) {
	pg := testenv.StartPostgres(t)
	seedRandom(t, pg, "rnd", 64)
	volume := t.TempDir()
	sockDir, _ := os.MkdirTemp("", "rsock")
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	env := []string{"REMORA_STORAGE=file://" + volume, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd", "REMORA_COMPRESSION=none",
		"REMORA_ANNOTATIONS=" + filepath.Join(t.TempDir(), "none"), "REMORA_SOCKET=" + filepath.Join(sockDir, "agent.sock"), "REMORA_METRICS_ADDR="}
	ag := startAgent(t, env, filepath.Join(sockDir, "agent.sock"))
	client, err := agent.Dial(filepath.Join(sockDir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if _, started, _, err := client.Backup(context.Background()); err != nil || !started {
		t.Fatalf("backup: %v %v", started, err)
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
	ag.stop(t, 20*time.Second)
	if !strings.Contains(ag.logs.String(), "interrupting the running backup") {
		t.Errorf("logs:\n%s", ag.logs)
	}
	if left := filesUnder(volume); len(left) != 0 {
		t.Fatalf("the interrupted backup left %v", left)
	}
}
