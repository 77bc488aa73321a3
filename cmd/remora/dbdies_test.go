package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	seedRandom(t, pg, "rnd", 64)
	volume := t.TempDir()
	podinfo := t.TempDir()
	writeDownwardAPI(t, podinfo, map[string]string{"remora.dev/schedule": "@yearly", "remora.dev/retention": "last=1", "remora.dev/databases": "rnd"})
	sockDir, _ := os.MkdirTemp("", "rsock")
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "agent.sock")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	hook := startReceiver(t)
	env := []string{"REMORA_STORAGE=file://" + volume, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_ANNOTATIONS=" + filepath.Join(podinfo, "annotations"),
		"REMORA_SOCKET=" + sock, "REMORA_METRICS_ADDR=" + metricsAddr, "REMORA_NOTIFY_WEBHOOK_URL=" + hook.srv.URL}
	ag := startAgent(t, env, sock)
	mustRemora(t, env, "backup", "--wait")
	first := listJSON(t, env)
	if len(first) != 1 {
		t.Fatalf("%d backups", len(first))
	}

	time.Sleep(1100 * time.Millisecond)
	mustRemora(t, env, "backup")
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
			t.Fatalf("the run did not end after the database died:\n%s", ag.logs)
		}
	}
	if v := metricValue(scrape(t, metricsAddr), "remora_backup_failures_total"); v != "1" {
		t.Errorf("remora_backup_failures_total = %q, want 1", v)
	}
	for start := time.Now(); len(hook.received()) == 0 && time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
	}
	if posts := hook.received(); len(posts) != 1 || !strings.Contains(posts[0], "failed") {
		t.Errorf("notifications: %q", posts)
	}
	if got := listJSON(t, env); len(got) != 1 || got[0].ID != first[0].ID {
		t.Fatalf("after the failed run, list shows %+v (want the earlier backup, kept by last=1)", got)
	}
	for _, f := range filesUnder(volume) {
		if !strings.Contains(f, first[0].ID) {
			t.Errorf("left by the failed run: %s", f)
		}
	}
	mustRemora(t, env, "verify", "--all")
	t.Logf("the run failed with: %s", last)
}
