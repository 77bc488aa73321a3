package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"remora.dev/remora/control"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// pitrBench is the state BenchmarkPITR's three parts share: one server
// (the database of REMORA_BENCH_MIB plus a pgbench database for load),
// one S3 server, and a connection for reading WAL positions.
type pitrBench struct {
	b      *testing.B
	pg     *testenv.Postgres
	s3     *testenv.S3
	conn   *pgx.Conn
	remora *testenv.Remora
	env    []string // remora's environment, without REMORA_STORAGE
	seg    uint64   // wal_segment_size
}

// BenchmarkPITR: point-in-time recovery. (1) A physical base backup beside
// pg_basebackup to /dev/null (the limit) and pg_basebackup | zstd -T2 (what
// compression at disk speed would cost), with the CPU floor of each; (2)
// the archive lag of `remora agent`'s WAL streaming under pgbench, at the
// default flush interval and at 1 s; (3) `remora restore --to-time` and
// the server's recovery on it, with 8 and 64 WAL segments after the base
// backup. REMORA_BENCH_PGBENCH_SECONDS (default 60) sets the load's length;
// REMORA_BENCH_CPUPROFILE=FILE profiles the base backup to a directory;
// REMORA_BENCH_DEBUG=1 prints the lag samples.
func BenchmarkPITR(b *testing.B) {
	p := &pitrBench{b: b, pg: testenv.StartPostgres(b), s3: testenv.StartS3(b), remora: &testenv.Remora{Bin: remoraBinary(b)}}
	p.s3.MakeBucket(b, "pitr")
	seedPostgres(b, p.pg, "bench", sizeMiB())
	conn, err := pgx.Connect(context.Background(), p.pg.DSN("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	p.conn = conn
	p.seg = uint64(p.queryInt("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'"))
	p.env = append(baseEnv(), p.s3.Env()...)
	p.env = append(p.env, "REMORA_DRIVER=postgres", "REMORA_DSN="+p.pg.DSN("postgres"),
		"REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=db-0", "REMORA_LOG_LEVEL=warn", "REMORA_METRICS_ADDR=")

	b.ResetTimer()
	p.baseBackups(rounds())
	fmt.Printf("\n%s", lagMethod)
	seconds := envInt("REMORA_BENCH_PGBENCH_SECONDS", 60)
	p.pgbench("-i", "-q", "-s", "20")
	var rows, notes []string
	for _, flush := range []time.Duration{10 * time.Second, time.Second} {
		a := p.startAgent(flush)
		rows = append(rows, a.lagRow(seconds))
		notes = append(notes, a.catchUp)
		if flush != time.Second {
			p.stopAgent(a)
		} else {
			fmt.Printf("\nWAL archive lag under `pgbench -c 4 -j 2 -T %d` (scale 20), archive in S3\n%s%s", seconds, lagHeader, strings.Join(rows, ""))
			fmt.Printf("\n%s", strings.Join(notes, ""))
			p.restores(a)
			p.stopAgent(a)
		}
	}
	b.StopTimer()
}

// baseBackups races the physical base backups.
func (p *pitrBench) baseBackups(rounds int) {
	b := p.b
	size := p.pg.Psql(b, "postgres", "SELECT pg_size_pretty(sum(pg_database_size(datname))) FROM pg_database")
	out := b.TempDir()
	shellEnv := append(baseEnv(), "PGHOST="+p.pg.SocketDir, "PGPORT="+strconv.Itoa(p.pg.Port), "PGUSER=postgres")
	vars := map[string]string{"pg_basebackup": filepath.Join(p.pg.Bin, "pg_basebackup")}
	backup := func(storage string) func(int) *exec.Cmd {
		return func(int) *exec.Cmd {
			c := exec.Command(p.remora.Bin, "backup", "--method", "physical", "--storage", storage)
			c.Env = p.env
			return c
		}
	}
	rs := race(b, "PostgreSQL physical base backup, cluster of "+size, rounds, p.s3, "pitr", []contender{
		{name: "`pg_basebackup -Ft -D - -X none -c fast > /dev/null` (limit)",
			cmd: shell(shellEnv, "{pg_basebackup} -Ft -D - -X none -c fast > /dev/null", vars)},
		{name: "`remora backup --method physical` → `file://` (zstd)", cmd: profiled(backup("file://" + out)),
			before: func(int) { clearDir(b, out) }},
		{name: "`remora backup --method physical` → S3 (zstd)", prefix: "base/", cmd: backup(p.s3.URL("pitr", "base"))},
		{name: "`pg_basebackup … \\| zstd -3 -T2 > /dev/null` (reference)", need: "zstd",
			cmd: shell(shellEnv, "{pg_basebackup} -Ft -D - -X none -c fast | zstd -q -3 -T2 > /dev/null", vars)},
	})
	cores := float64(runtime.NumCPU())
	fmt.Printf("\nCPU floor of the base backups: the machine's CPU during the run spread over its %d cores\n", runtime.NumCPU())
	fmt.Printf("| contender | wall | CPU (machine) | CPU floor | wall / floor |\n|---|---:|---:|---:|---:|\n")
	for i, r := range rs {
		wall, cpu := median(r.walls), median(r.cpu)
		floor := cpu.Seconds() / cores
		fmt.Printf("| %s | %s | %.1f s | %.2f s | %.2f× |\n", []string{"limit", "remora → file://", "remora → S3", "pg_basebackup \\| zstd -T2"}[i],
			wall.Round(10*time.Millisecond), cpu.Seconds(), floor, wall.Seconds()/floor)
	}
}

// profiled adds REMORA_CPUPROFILE=$REMORA_BENCH_CPUPROFILE to a
// contender's environment, when that is set.
func profiled(cmd func(int) *exec.Cmd) func(int) *exec.Cmd {
	return func(round int) *exec.Cmd {
		c := cmd(round)
		if path := os.Getenv("REMORA_BENCH_CPUPROFILE"); path != "" {
			c.Env = append(slices.Clone(c.Env), "REMORA_CPUPROFILE="+path)
		}
		return c
	}
}

// clearDir empties a directory between runs, so that the disk holds one
// backup at a time.
func clearDir(b *testing.B, dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			b.Fatal(err)
		}
	}
}

// pgbench runs pgbench on database oltp, created on the first call.
func (p *pitrBench) pgbench(args ...string) string {
	p.b.Helper()
	if args[0] == "-i" {
		p.pg.Psql(p.b, "postgres", "CREATE DATABASE oltp")
	}
	out, err := p.pg.Command("pgbench", append(args, "oltp")...).CombinedOutput()
	if err != nil {
		p.b.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (p *pitrBench) queryInt(sql string) int64 {
	p.b.Helper()
	var n int64
	if err := p.conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		p.b.Fatalf("%s: %v", sql, err)
	}
	return n
}

// insertLSN is where the server inserts WAL now.
func (p *pitrBench) insertLSN(conn *pgx.Conn) (postgres.LSN, error) {
	var s string
	if err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		return 0, err
	}
	return postgres.ParseLSN(s)
}

// agentRun is an agent streaming WAL, and a client of its socket.
type agentRun struct {
	p       *pitrBench
	proc    *testenv.Process
	client  *control.Client
	env     []string
	flush   time.Duration
	storage string
	catchUp string // how it caught up with the server when it started
}

// startAgent starts `remora agent` with remora.dev/pitr on and the given
// flush interval, streaming into an S3 prefix and a slot of its own, and
// waits until it streams.
func (p *pitrBench) startAgent(flush time.Duration) *agentRun {
	b := p.b
	name := "flush" + strconv.Itoa(int(flush.Seconds()))
	podinfo := b.TempDir()
	sock := filepath.Join(testenv.SocketDir(b), "agent.sock")
	testenv.WriteDownwardAPI(b, podinfo, map[string]string{"remora.dev/method": "physical", "remora.dev/pitr": "on",
		"remora.dev/pitr-flush": flush.String()})
	a := &agentRun{p: p, flush: flush, storage: p.s3.URL("pitr", name)}
	a.env = append(slices.Clone(p.env), "REMORA_STORAGE="+a.storage, "REMORA_PITR_SLOT=bench_"+name,
		"REMORA_ANNOTATIONS="+filepath.Join(podinfo, "annotations"), "REMORA_SOCKET="+sock)
	a.proc = clitest.StartAgent(b, p.remora, a.env, sock)
	c, err := control.Dial(sock)
	if err != nil {
		b.Fatal(err)
	}
	a.client = c
	var from postgres.LSN
	testenv.WaitFor(b, "WAL streaming", time.Minute, func() bool {
		if w := a.status(); w != nil && w.Connected {
			from, _ = postgres.ParseLSN(w.Stored)
		}
		return from != 0
	})
	// A new archive begins where the new slot's WAL does: at the last
	// checkpoint's redo point, before the load starts.
	to, err := p.insertLSN(p.conn)
	if err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	a.waitArchived()
	a.catchUp = fmt.Sprintf("flush %s: the new archive began %.0f MiB behind the server and caught up in %s (%.0f MiB/s)\n",
		flush, float64(to-from)/(1<<20), time.Since(began).Round(10*time.Millisecond), float64(to-from)/(1<<20)/time.Since(began).Seconds())
	return a
}

func (a *agentRun) status() *control.WALStatus {
	st, err := a.client.Status(context.Background())
	if err != nil {
		return nil
	}
	return st.WAL
}

// stored is where the archive ends, per the agent.
func (a *agentRun) stored() postgres.LSN {
	w := a.status()
	if w == nil {
		return 0
	}
	lsn, _ := postgres.ParseLSN(w.Stored)
	return lsn
}

// waitArchived waits until the archive holds the server's WAL up to now.
func (a *agentRun) waitArchived() {
	want, err := a.p.insertLSN(a.p.conn)
	if err != nil {
		a.p.b.Fatal(err)
	}
	testenv.WaitFor(a.p.b, "WAL archived past "+want.String(), 3*time.Minute, func() bool { return a.stored() >= want })
}

// stopAgent stops the agent and drops its slot, which would hold WAL back.
func (p *pitrBench) stopAgent(a *agentRun) {
	if ok, _ := a.proc.Stop(os.Interrupt, 30*time.Second); !ok {
		p.b.Fatalf("the agent did not stop:\n%s", a.proc.Logs())
	}
	p.pg.Psql(p.b, "postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'bench_%'")
}
