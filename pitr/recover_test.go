package pitr

import (
	"context"
	"encoding/json"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// baseBackup takes a plain base backup with pg_basebackup (standing in for
// a physical backup of Remora's own) and returns its directory and what
// recovery needs of it.
func baseBackup(t *testing.T, pg *testenv.Postgres) (string, Base) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "base")
	if out, err := pg.Command("pg_basebackup", "-D", dir, "-X", "fetch", "-c", "fast").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	stopTime := time.Now()
	b, err := os.ReadFile(filepath.Join(dir, "backup_manifest"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		WALRanges []struct {
			Timeline uint32 `json:"Timeline"`
			Start    string `json:"Start-LSN"`
			End      string `json:"End-LSN"`
		} `json:"WAL-Ranges"`
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.WALRanges) != 1 {
		t.Fatalf("backup_manifest: %v", err)
	}
	start, _ := postgres.ParseLSN(m.WALRanges[0].Start)
	stop, _ := postgres.ParseLSN(m.WALRanges[0].End)
	system := strings.TrimSpace(pg.Psql(t, "postgres", "SELECT system_identifier FROM pg_control_system()"))
	return dir, Base{ID: "base", System: system, Timeline: m.WALRanges[0].Timeline, Start: start, Stop: stop, StopTime: stopTime, SegSize: segSize}
}

// restoreCopy copies a base backup's directory for one restore.
func restoreCopy(t *testing.T, base string) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "rpgr") // where the server's user may enter
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o755)
	dir := filepath.Join(parent, "data")
	if out, err := exec("cp", "-a", base, dir); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return dir
}

// storedPast waits until the archive holds the server's WAL up to now.
func (a *archive) storedPast(t *testing.T) {
	t.Helper()
	lsn, _ := postgres.ParseLSN(strings.TrimSpace(a.pg.Psql(t, "postgres", "SELECT pg_current_wal_insert_lsn()")))
	testenv.WaitFor(t, "the archive past "+lsn.String(), 2*time.Minute, func() bool { return a.s.Stats().Stored >= lsn })
}

// startRecovered starts a server on a recovered directory and waits until
// recovery ended and it was promoted.
func startRecovered(t *testing.T, dir string) *testenv.Postgres {
	t.Helper()
	pg := testenv.StartPostgresOn(t, dir)
	testenv.WaitFor(t, "recovery to end", 2*time.Minute, func() bool {
		out, err := pg.PsqlErr("postgres", "SELECT pg_is_in_recovery()")
		return err == nil && strings.TrimSpace(out) == "f"
	})
	return pg
}

// TestRecoverToATime: a restore to a time between two commits gives
// exactly the first; one to the latest after the server crashed has what
// was committed a flush interval before the crash.
func TestRecoverToATime(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE TABLE t (id int, v text)")
	a := newArchive(t, pg)
	a.start()
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (1, 'before the base backup')")
	baseDir, base := baseBackup(t, pg)
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (2, 'first'); SELECT pg_switch_wal()")
	pg.Psql(t, "postgres", "INSERT INTO t SELECT g, 'filler' FROM generate_series(100, 20000) g")
	target, err := time.Parse("2006-01-02 15:04:05.999999-07", strings.TrimSpace(pg.Psql(t, "postgres", "SELECT clock_timestamp()")))
	if err != nil {
		t.Fatal(err)
	}
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (3, 'second')")
	a.storedPast(t)

	ctx := context.Background()
	dir := restoreCopy(t, baseDir)
	rec, err := Recover(ctx, a.st, a.scope, repo.Trust{}, nil, base, dir, Target{Time: target})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recovered with %d files up to %s", rec.Files, rec.Last)
	got := startRecovered(t, dir)
	if rows := got.Psql(t, "postgres", "SELECT string_agg(v, ',' ORDER BY id) FROM t WHERE id < 100"); strings.TrimSpace(rows) != "before the base backup,first" {
		t.Errorf("recovered to %s: %q", target, rows)
	}

	// The latest, after a crash: the last commit is there once a partial
	// holding it was stored.
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (4, 'last')")
	a.storedPast(t)
	pg.Kill()
	dir = restoreCopy(t, baseDir)
	if _, err := Recover(ctx, a.st, a.scope, repo.Trust{}, nil, base, dir, Target{Latest: true}); err != nil {
		t.Fatal(err)
	}
	got = startRecovered(t, dir)
	if rows := got.Psql(t, "postgres", "SELECT string_agg(v, ',' ORDER BY id) FROM t WHERE id < 100"); strings.TrimSpace(rows) != "before the base backup,first,second,last" {
		t.Errorf("recovered to the latest: %q", rows)
	}
}

func exec(name string, args ...string) ([]byte, error) {
	return osexec.Command(name, args...).CombinedOutput()
}

// TestRecoverAcrossATimeline: a server recovered to a point is promoted
// to timeline 2 and archives into the same archive; a later restore from
// the same base backup follows timeline 1 to the branch point and
// timeline 2 after it, and leaves out what timeline 1 wrote after the
// branch.
func TestRecoverAcrossATimeline(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE TABLE t (id int, v text)")
	a := newArchive(t, pg)
	a.start()
	baseDir, base := baseBackup(t, pg)
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (1, 'kept')")
	target, _ := time.Parse("2006-01-02 15:04:05.999999-07", strings.TrimSpace(pg.Psql(t, "postgres", "SELECT clock_timestamp()")))
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (2, 'dropped by the branch'); SELECT pg_switch_wal()")
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (3, 'dropped by the branch')")
	a.storedPast(t)
	a.stop()
	pg.Kill()

	ctx := context.Background()
	dir := restoreCopy(t, baseDir)
	if _, err := Recover(ctx, a.st, a.scope, repo.Trust{}, nil, base, dir, Target{Time: target}); err != nil {
		t.Fatal(err)
	}
	promoted := startRecovered(t, dir)
	if tli := strings.TrimSpace(promoted.Psql(t, "postgres", "SELECT timeline_id FROM pg_control_checkpoint()")); tli != "2" {
		t.Logf("timeline after promotion: %s", tli)
	}
	b := newArchive(t, promoted)
	b.st = a.st // the same archive, as a recovered workload keeps its storage
	b.start()
	promoted.Psql(t, "postgres", "INSERT INTO t VALUES (4, 'on timeline 2'); SELECT pg_switch_wal()")
	promoted.Psql(t, "postgres", "INSERT INTO t VALUES (5, 'on timeline 2')")
	b.storedPast(t)
	if !b.has("00000002.history") {
		t.Fatal("the history file of timeline 2 was not archived")
	}

	dir = restoreCopy(t, baseDir)
	if _, err := Recover(ctx, a.st, a.scope, repo.Trust{}, nil, base, dir, Target{Latest: true}); err != nil {
		t.Fatal(err)
	}
	got := startRecovered(t, dir)
	if rows := strings.TrimSpace(got.Psql(t, "postgres", "SELECT string_agg(id::text, ',' ORDER BY id) FROM t")); rows != "1,4,5" {
		t.Errorf("recovered across the timeline: rows %s, want 1,4,5", rows)
	}
	if rep, err := VerifyChain(ctx, a.st, a.scope, repo.Trust{}, nil, base); err != nil {
		t.Errorf("chain: %v", err)
	} else {
		t.Logf("chain: %d files up to %s", rep.Files, rep.Last)
	}
}

// replacedOnRead is the archive's storage while the agent streams into it
// during a restore: the first time the restore opens a partial's record,
// the server completes that segment and the streamer stores it whole,
// deleting the partial the restore listed.
type replacedOnRead struct {
	storage.Storage
	a    *archive
	done bool
}

func (r *replacedOnRead) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if !r.done && strings.Contains(key, ".partial.") && strings.HasSuffix(key, ".json") {
		r.done = true
		r.a.pg.Psql(r.a.t, "postgres", "INSERT INTO t VALUES (3, 'while restoring'); SELECT pg_switch_wal()")
		r.a.storedPast(r.a.t)
	}
	return r.Storage.Open(ctx, key)
}

// TestRecoverWhileStreaming: a restore from an archive the agent is
// streaming into reads the partial segment's replacement when the
// streamer replaced the partial it listed.
func TestRecoverWhileStreaming(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE TABLE t (id int, v text)")
	a := newArchive(t, pg)
	a.start()
	baseDir, base := baseBackup(t, pg)
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (1, 'first')")
	a.storedPast(t)
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (2, 'second')")
	a.storedPast(t)
	st := &replacedOnRead{Storage: a.st, a: a}
	dir := restoreCopy(t, baseDir)
	if _, err := Recover(context.Background(), st, a.scope, repo.Trust{}, nil, base, dir, Target{Latest: true}); err != nil {
		t.Fatal(err)
	}
	if !st.done {
		t.Fatal("the restore read no partial segment")
	}
	got := startRecovered(t, dir)
	if rows := strings.TrimSpace(got.Psql(t, "postgres", "SELECT string_agg(v, ',' ORDER BY id) FROM t WHERE id < 3")); rows != "first,second" {
		t.Errorf("recovered: %q", rows)
	}
}
