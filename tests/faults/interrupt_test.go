package faults

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
)

// TestInterrupted: SIGTERM during a backup stops it at once, says so, and
// removes what it had written.
func TestInterrupted(t *testing.T) {
	pg := testenv.StartPostgres(t)
	testenv.SeedRandom(t, pg, "rnd", 64)
	dir := t.TempDir()
	env := testenv.PgEnv(pg, "file://"+dir, "REMORA_DATABASES=rnd", "REMORA_COMPRESSION=none")
	cmd := remora.Command(env, "backup")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the big object is being written.
	deadline := time.Now().Add(60 * time.Second)
	for !testenv.Writing(dir, "rnd.dump.remora-tmp-", 1<<20) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the dump never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if err == nil {
		t.Fatal("an interrupted backup exited 0")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to stop", d)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say it was interrupted:\n%s", stderr.String())
	}
	if left := testenv.FilesUnder(dir); len(left) != 0 {
		t.Fatalf("an interrupted backup left %v", left)
	}
	// pg_dump may need a moment to notice that its client is gone: wait
	// for its session to end.
	dumping := "0"
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		dumping = pg.Psql(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (application_name = 'pg_dump' OR query LIKE 'COPY%')")
		if dumping == "0" || time.Since(start) > 10*time.Second {
			break
		}
	}
	if dumping != "0" {
		t.Errorf("pg_dump still running 10s after the interrupt (%s sessions)", dumping)
	}
}
