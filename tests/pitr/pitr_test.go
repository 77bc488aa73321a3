// Package pitr runs point-in-time recovery as a pod does: `remora agent`
// beside a real PostgreSQL streams its WAL into two storages (an S3
// server behind a fault proxy, and a directory) and takes physical
// backups; the CLI lists the window, verifies the chain and restores data
// directories to a time and to the end, on which a second server starts.
package pitr

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

var remora *testenv.Remora

func TestMain(m *testing.M) {
	remora = testenv.BuildRemora()
	testenv.Main(m)
}

// pod is an agent beside a server.
type pod struct {
	t      *testing.T
	pg     *testenv.Postgres
	env    []string
	socket string
	agent  *testenv.Process
}

func (p *pod) start() {
	p.agent = clitest.StartAgent(p.t, remora, p.env, p.socket)
	testenv.WaitFor(p.t, "WAL streaming", time.Minute, func() bool {
		w := clitest.Status(p.t, remora, p.env).WAL
		return w != nil && w.Connected
	})
}

// archived waits until the archive holds the server's WAL up to now.
func (p *pod) archived() {
	p.t.Helper()
	want, _ := postgres.ParseLSN(strings.TrimSpace(p.pg.Psql(p.t, "postgres", "SELECT pg_current_wal_insert_lsn()")))
	testenv.WaitFor(p.t, "WAL archived past "+want.String(), 2*time.Minute, func() bool {
		w := clitest.Status(p.t, remora, p.env).WAL
		if w == nil {
			return false
		}
		got, err := postgres.ParseLSN(w.Stored)
		return err == nil && got >= want
	})
}

// serverTime is the server's clock now.
func serverTime(t *testing.T, pg *testenv.Postgres) time.Time {
	t.Helper()
	tm, err := time.Parse("2006-01-02 15:04:05.999999-07", strings.TrimSpace(pg.Psql(t, "postgres", "SELECT clock_timestamp()")))
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// newDataDir is a path for a restored data directory, in a directory the
// server's user may enter.
func newDataDir(t *testing.T) string {
	parent, err := os.MkdirTemp("", "rpgr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o755)
	return filepath.Join(parent, "data")
}

// rowsOn starts a server on a restored directory, waits for it to finish
// recovery, and returns its rows.
func rowsOn(t *testing.T, dir string) string {
	t.Helper()
	pg := testenv.StartPostgresOn(t, dir)
	testenv.WaitFor(t, "recovery to end", 2*time.Minute, func() bool {
		out, err := pg.PsqlErr("postgres", "SELECT pg_is_in_recovery()")
		return err == nil && strings.TrimSpace(out) == "f"
	})
	return strings.TrimSpace(pg.Psql(t, "postgres", "SELECT string_agg(v, ',' ORDER BY id) FROM t WHERE id < 1000"))
}

func TestPointInTime(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "pitr")
	proxy := testenv.StartFaultProxy(t, s3.Endpoint)
	s3URL := "s3://pitr/wal?endpoint=" + proxy.Endpoint + "&region=" + s3.Region + "&insecure=true&timeout=2s&retries=1"
	dir := t.TempDir()
	podinfo := t.TempDir()
	sock := filepath.Join(testenv.SocketDir(t), "agent.sock")
	testenv.WriteDownwardAPI(t, podinfo, map[string]string{"remora.dev/method": "physical", "remora.dev/pitr": "on", "remora.dev/pitr-flush": "1s", "remora.dev/retention": "last=1"})
	p := &pod{t: t, pg: pg, socket: sock, env: append(s3.Env(), "REMORA_STORAGE="+s3URL+" file://"+dir, "REMORA_DRIVER=postgres",
		"REMORA_DSN="+pg.DSN("postgres"), "REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0",
		"REMORA_ANNOTATIONS="+filepath.Join(podinfo, "annotations"), "REMORA_SOCKET="+sock, "REMORA_METRICS_ADDR=")}
	p.start()
	pg.Psql(t, "postgres", "CREATE TABLE t (id int, v text)")
	remora.Must(t, p.env, "backup", "--wait")
	// pgbench's load while WAL streams.
	for _, args := range [][]string{{"-i", "-q", "-s", "2", "postgres"}, {"-c", "2", "-T", "3", "postgres"}} {
		if out, err := pg.Command("pgbench", args...).CombinedOutput(); err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
	}
	balance := pg.Psql(t, "postgres", "SELECT sum(abalance) FROM pgbench_accounts")
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (1, 'first')")
	target := serverTime(t, pg)
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (2, 'second')")
	p.archived()

	// The S3 storage fails for a while: WAL waits on the server, held by
	// the slot, and is archived once it is back.
	proxy.Set(func(*http.Request, int) testenv.Fault { return testenv.Answer503 })
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (3, 'during an outage'); SELECT pg_switch_wal()")
	pg.Psql(t, "postgres", "INSERT INTO t SELECT g, 'filler' FROM generate_series(1000, 50000) g; SELECT pg_switch_wal()")
	testenv.WaitFor(t, "the outage noticed", time.Minute, func() bool {
		w := clitest.Status(t, remora, p.env).WAL
		return w != nil && w.Error != ""
	})
	proxy.Set(nil)
	p.archived()

	// The agent killed mid-segment, then the server crashing mid-stream.
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (4, 'before the kill')")
	p.agent.Kill()
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (5, 'while no agent runs'); SELECT pg_switch_wal()")
	p.start()
	p.archived()
	pg.Restart(t, true)
	pg.Psql(t, "postgres", "INSERT INTO t VALUES (6, 'after a crash')")
	p.archived()

	entries := clitest.List(t, remora, p.env)
	if len(entries) != 1 {
		t.Fatalf("%d backups listed, want the one physical backup", len(entries))
	}
	for _, st := range []string{s3URL, "file://" + dir} {
		out := remora.Must(t, append(p.env, "REMORA_STORAGE="+st), "verify", entries[0].ID).Stdout
		if !strings.Contains(out, "WAL OK") {
			t.Errorf("verify in %s: %s", st, out)
		}
		if out := remora.Must(t, append(p.env, "REMORA_STORAGE="+st), "list").Stdout; !strings.Contains(out, "Point in time: restorable from") {
			t.Errorf("list in %s shows no window:\n%s", st, out)
		}
	}

	if w := clitest.Status(t, remora, p.env).WAL; w == nil || w.WindowFrom.IsZero() || !w.WindowTo.After(w.WindowFrom) {
		t.Errorf("status shows no restorable window: %+v", w)
	}
	if out := remora.Must(t, p.env, "status").Stdout; !strings.Contains(out, "restorable from") {
		t.Errorf("status:\n%s", out)
	}

	// To a time between two commits: the first only. To the latest, from
	// the other storage: everything.
	d := newDataDir(t)
	remora.Must(t, append(p.env, "REMORA_STORAGE=file://"+dir), "restore", "--data-dir", d, "--to-time", target.Format(time.RFC3339Nano))
	if rows := rowsOn(t, d); rows != "first" {
		t.Errorf("restored to %s: %q, want first", target, rows)
	}
	d = newDataDir(t)
	remora.Must(t, append(p.env, "REMORA_STORAGE="+s3URL), "restore", "--data-dir", d, "--to-latest")
	latest := testenv.StartPostgresOn(t, d)
	testenv.WaitFor(t, "recovery to end", 2*time.Minute, func() bool {
		out, err := latest.PsqlErr("postgres", "SELECT pg_is_in_recovery()")
		return err == nil && strings.TrimSpace(out) == "f"
	})
	if rows := strings.TrimSpace(latest.Psql(t, "postgres", "SELECT string_agg(v, ',' ORDER BY id) FROM t WHERE id < 1000")); rows != "first,second,during an outage,before the kill,while no agent runs,after a crash" {
		t.Errorf("restored to the latest: %q", rows)
	}
	if got := latest.Psql(t, "postgres", "SELECT sum(abalance) FROM pgbench_accounts"); got != balance {
		t.Errorf("pgbench's balance restored to the latest: %s, want %s", got, balance)
	}

	// wal-fetch, a restore_command: an archived segment as the archive
	// holds it, and a file the archive lacks is a failure PostgreSQL takes
	// for "no such file".
	var segment string
	for _, f := range testenv.FilesUnder(dir) {
		if strings.Contains(f, "/postgres/wal/") && strings.HasSuffix(f, "0000000000000003.json") {
			segment = strings.TrimSuffix(filepath.Base(f), ".json")
		}
	}
	if segment == "" {
		t.Fatalf("no archived segment 3 in %v", testenv.FilesUnder(dir))
	}
	fetched := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	remora.Must(t, append(p.env, "REMORA_STORAGE=file://"+dir), "wal-fetch", segment, fetched)
	if fi, err := os.Stat(fetched); err != nil || fi.Size() != 16<<20 {
		t.Errorf("wal-fetch %s: %v %v", segment, fi, err)
	}
	if r := remora.Run(t, append(p.env, "REMORA_STORAGE=file://"+dir), "wal-fetch", "00000009.history", fetched+"2"); r.Code != 1 || !strings.Contains(r.Stderr, "not in the WAL archive") {
		t.Errorf("wal-fetch of a file not archived: %s", r)
	}

	// No base backup before the target: one line, nothing written.
	d = newDataDir(t)
	r := remora.Run(t, append(p.env, "REMORA_STORAGE=file://"+dir), "restore", "--data-dir", d, "--to-time", "2001-01-01T00:00:00Z")
	if r.Code == 0 || !strings.Contains(r.Stderr, "no physical base backup") || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
		t.Errorf("restore before the first base backup: %s", r)
	}
	if _, err := os.Stat(d); err == nil {
		t.Errorf("%s was created", d)
	}
	// A second physical backup, with retention last=1: the first goes, and
	// so does the WAL only it needed; the chain from the second verifies.
	before := walFiles(t, dir)
	remora.Must(t, p.env, "backup", "--wait")
	entries = clitest.List(t, remora, p.env)
	if len(entries) != 1 {
		t.Fatalf("%d backups after retention last=1", len(entries))
	}
	after := walFiles(t, dir)
	if after >= before {
		t.Errorf("WAL retention removed nothing: %d files before the second backup, %d after", before, after)
	}
	if out := remora.Must(t, append(p.env, "REMORA_STORAGE=file://"+dir), "verify", entries[0].ID).Stdout; !strings.Contains(out, "OK") {
		t.Errorf("verify after WAL retention: %s", out)
	}
	stopAgent(t, p.agent)
}

// walFiles counts the archived WAL files in a file:// storage.
func walFiles(t *testing.T, dir string) int {
	n := 0
	for _, f := range testenv.FilesUnder(dir) {
		if strings.Contains(f, "/postgres/wal/") && strings.HasSuffix(f, ".json") {
			n++
		}
	}
	return n
}

func stopAgent(t *testing.T, ag *testenv.Process) {
	if ok, _ := ag.Stop(syscall.SIGTERM, 30*time.Second); !ok {
		t.Errorf("the agent did not stop:\n%s", ag.Logs())
	}
}
