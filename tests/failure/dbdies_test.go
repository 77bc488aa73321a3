package failure

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestDatabaseDiesMidDump: the server is killed while the agent dumps it. The
// run fails, the failure metric and a notification say so, nothing of the
// run is left, and retention (last=1) deletes nothing: the earlier backup is
// still listed and verifies.
func TestDatabaseDiesMidDump(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	testenv.SeedRandom(t, pg, "rnd", 64)
	volume := t.TempDir()
	podinfo := t.TempDir()
	testenv.WriteDownwardAPI(t, podinfo, map[string]string{"remora.dev/schedule": "@yearly", "remora.dev/retention": "last=1", "remora.dev/databases": "rnd"})
	sockDir := testenv.SocketDir(t)
	sock := filepath.Join(sockDir, "agent.sock")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	hook := testenv.StartReceiver(t)
	env := []string{"REMORA_STORAGE=file://" + volume, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_ANNOTATIONS=" + filepath.Join(podinfo, "annotations"),
		"REMORA_SOCKET=" + sock, "REMORA_METRICS_ADDR=" + metricsAddr, "REMORA_NOTIFY_WEBHOOK_URL=" + hook.URL,
		// pg_dump is let run 2 ms at a time below: at the default low
		// priority, on a machine busy with other tests, it would hardly
		// run in them.
		"REMORA_PRIORITY=normal"}
	ag := clitest.StartAgent(t, remora, env, sock)
	remora.Must(t, env, "backup", "--wait")
	first := clitest.List(t, remora, env)
	if len(first) != 1 {
		t.Fatalf("%d backups", len(first))
	}

	// The dump is fast: to kill the server in the middle of it, pg_dump is
	// held (SIGSTOP) and let run a few milliseconds at a time until more
	// than 1 MiB has gone through the agent; the server is killed while
	// pg_dump is held, then pg_dump goes on and finds it gone.
	remora.Must(t, env, "backup")
	dump := waitChild(t, ag.Cmd.Process.Pid, "pg_dump")
	defer syscall.Kill(dump, syscall.SIGCONT)
	for start := time.Now(); ; {
		st := clitest.Status(t, remora, env)
		if st.Running != nil && st.Running.Progress.BytesRead > 1<<20 {
			break
		}
		if st.Running == nil || time.Since(start) > 30*time.Second {
			t.Fatalf("the dump never got going: %+v", st)
		}
		syscall.Kill(dump, syscall.SIGCONT)
		time.Sleep(2 * time.Millisecond) // pacing only: the status above decides
		syscall.Kill(dump, syscall.SIGSTOP)
	}
	pg.Kill()
	syscall.Kill(dump, syscall.SIGCONT)
	var last string
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		st := clitest.Status(t, remora, env)
		if st.Running == nil && st.Last != nil && st.Last.Run == 2 {
			if st.Last.OK {
				t.Fatal("the run reported success with the database killed")
			}
			last = st.Last.Error
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the run did not end after the database died:\n%s", ag.Logs())
		}
	}
	if v := testenv.MetricValue(testenv.Scrape(t, metricsAddr), "remora_backup_failures_total"); v != "1" {
		t.Errorf("remora_backup_failures_total = %q, want 1", v)
	}
	for start := time.Now(); len(hook.Received()) == 0 && time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
	}
	if len(hook.Received()) == 0 {
		t.Errorf("no notification of the failure within 10s")
	}
	if got := clitest.List(t, remora, env); len(got) != 1 || got[0].ID != first[0].ID {
		t.Fatalf("after the failed run, list shows %+v (want the earlier backup, kept by last=1)", got)
	}
	for _, f := range testenv.FilesUnder(volume) {
		if !strings.Contains(f, first[0].ID) {
			t.Errorf("left by the failed run: %s", f)
		}
	}
	remora.Must(t, env, "verify", "--all")

	// The agent waits for its notifications when it stops: after that,
	// none can come, so there was exactly one.
	if ok, _ := ag.Stop(syscall.SIGTERM, 10*time.Second); !ok {
		t.Fatalf("the agent did not stop within 10s of SIGTERM:\n%s", ag.Logs())
	}
	if posts := hook.Received(); len(posts) != 1 || !strings.Contains(posts[0], "failed") {
		t.Errorf("notifications: %q", posts)
	}
	t.Logf("the run failed with: %s", last)
}

// waitChild finds the child of ppid whose command is name and stops it
// (SIGSTOP) at once, before it has done much; it fails the test if none
// appears within 30 s.
func waitChild(t *testing.T, ppid int, name string) int {
	t.Helper()
	for start := time.Now(); time.Since(start) < 30*time.Second; {
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, f := range stats {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			// pid (comm) state ppid ...
			open, end := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')')
			if open < 0 || end < open || string(b[open+1:end]) != name {
				continue
			}
			var state string
			var parent int
			fmt.Sscanf(string(b[end+2:]), "%s %d", &state, &parent)
			if parent != ppid {
				continue
			}
			pid, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(f, "/proc/"), "/stat"))
			syscall.Kill(pid, syscall.SIGSTOP)
			return pid
		}
	}
	t.Fatalf("no %s started by process %d within 30s", name, ppid)
	return 0
}
