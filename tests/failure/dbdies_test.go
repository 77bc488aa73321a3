package failure

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
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
		"REMORA_SOCKET=" + sock, "REMORA_METRICS_ADDR=" + metricsAddr, "REMORA_NOTIFY_WEBHOOK_URL=" + hook.URL}
	ag := startAgent(t, env, sock)
	remora.Must(t, env, "backup", "--wait")
	first := listJSON(t, env)
	if len(first) != 1 {
		t.Fatalf("%d backups", len(first))
	}

	remora.Must(t, env, "backup")
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		st := statusJSON(t, env)
		if st.Running != nil && st.Running.Progress.BytesRead > 1<<20 {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the dump never got going: %+v", st)
		}
	}
	pg.Kill()
	var last string
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		st := statusJSON(t, env)
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
	if got := listJSON(t, env); len(got) != 1 || got[0].ID != first[0].ID {
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
