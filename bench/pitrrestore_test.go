package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/internal/testenv"
)

// restores takes a base backup into the agent's storage, then, for 8 and
// then 64 segments of WAL after it, restores a data directory to a time
// just after the last of them and recovers a server on it, checking that
// it holds exactly the commits before the time.
func (p *pitrBench) restores(a *agentRun) {
	b := p.b
	p.pg.Psql(b, "bench", "CREATE TABLE marks (n int, what text)")
	start, err := p.insertLSN(p.conn)
	if err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	p.remora.Must(b, a.env, "backup", "--wait") // the agent takes it, as in a pod
	fmt.Printf("\nRestore to a point: a base backup of the whole cluster (taken in %s) and N segments of WAL after it "+
		"(updates of 50,000 pgbench_accounts rows a statement), from S3\n", time.Since(began).Round(10*time.Millisecond))
	fmt.Printf("| WAL after the base backup | WAL files restored | `remora restore --to-time` | recovery (start to promoted) | WAL replayed | replay rate |\n|---|---:|---:|---:|---:|---:|\n")
	var want []string
	for _, n := range []int{8, 64} {
		p.generateWAL(start + postgres.LSN(uint64(n)*p.seg))
		p.pg.Psql(b, "bench", fmt.Sprintf("INSERT INTO marks VALUES (%d, 'before')", n))
		target := p.serverTime()
		targetLSN, err := p.insertLSN(p.conn)
		if err != nil {
			b.Fatal(err)
		}
		p.pg.Psql(b, "bench", fmt.Sprintf("INSERT INTO marks VALUES (%d, 'after'); SELECT pg_switch_wal()", n))
		a.waitArchived()
		want = append(want, fmt.Sprintf("%d before", n))
		restore, recovery, files, got := p.restoreTo(a, target)
		if got != strings.Join(want, ",") {
			b.Errorf("restored to %s: marks %q, want %q", target.Format(time.RFC3339Nano), got, strings.Join(want, ","))
		}
		want = append(want[:len(want)-1], fmt.Sprintf("%d after", n), fmt.Sprintf("%d before", n))
		replayed := float64(targetLSN-start) / (1 << 20)
		fmt.Printf("| %d segments (%d MiB) | %s | %s | %s | %.0f MiB | %.0f MiB/s |\n", n, uint64(n)*p.seg>>20, files,
			restore.Round(10*time.Millisecond), recovery.Round(10*time.Millisecond), replayed, replayed/recovery.Seconds())
	}
}

var filesRE = regexp.MustCompile(`(\d+) WAL files`)

// restoreTo restores a new data directory to target, starts a server on
// it and waits until it is promoted; it returns both walls, the number of
// WAL files the restore put in pg_wal, and the marks the server holds.
func (p *pitrBench) restoreTo(a *agentRun, target time.Time) (restore, recovery time.Duration, files, marks string) {
	b := p.b
	parent, err := os.MkdirTemp("", "rpgr")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(parent)
	os.Chmod(parent, 0o755)
	dir := filepath.Join(parent, "data")
	t0 := time.Now()
	res := p.remora.Must(b, a.env, "restore", "--data-dir", dir, "--to-time", target.Format(time.RFC3339Nano))
	restore = time.Since(t0)
	if m := filesRE.FindStringSubmatch(res.Stdout); m != nil {
		files = m[1]
	}
	t1 := time.Now()
	srv := testenv.StartPostgresOn(b, dir)
	defer srv.Kill()
	for {
		out, err := srv.PsqlErr("postgres", "SELECT pg_is_in_recovery()")
		if err == nil && strings.TrimSpace(out) == "f" {
			break
		}
		if time.Since(t1) > 10*time.Minute {
			b.Fatalf("the restored server still recovers after 10 min (%v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recovery = time.Since(t1)
	marks = strings.TrimSpace(srv.Psql(b, "bench", "SELECT string_agg(n || ' ' || what, ',' ORDER BY n, what) FROM marks"))
	return restore, recovery, files, marks
}

// generateWAL updates pgbench_accounts 50,000 rows at a time until the
// server's WAL reaches until.
func (p *pitrBench) generateWAL(until postgres.LSN) {
	accounts := p.queryIntIn("bench", "SELECT max(aid) FROM pgbench_accounts")
	for x := int64(1); ; x += 50000 {
		lsn, err := p.insertLSN(p.conn)
		if err != nil {
			p.b.Fatal(err)
		}
		if lsn >= until {
			return
		}
		if x > accounts {
			x = 1
		}
		p.pg.Psql(p.b, "bench", fmt.Sprintf("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN %d AND %d", x, x+49999))
	}
}

func (p *pitrBench) queryIntIn(db, sql string) int64 {
	var n int64
	if _, err := fmt.Sscan(p.pg.Psql(p.b, db, sql), &n); err != nil {
		p.b.Fatalf("%s: %v", sql, err)
	}
	return n
}

// serverTime is the server's clock now.
func (p *pitrBench) serverTime() time.Time {
	var t time.Time
	if err := p.conn.QueryRow(context.Background(), "SELECT clock_timestamp()").Scan(&t); err != nil {
		p.b.Fatal(err)
	}
	return t
}
