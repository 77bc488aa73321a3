package pitr

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// mysqlPod is an agent beside a MariaDB server with its binary log on.
type mysqlPod struct {
	t      *testing.T
	db     *testenv.MariaDB
	env    []string
	socket string
	agent  *testenv.Process
}

func startMySQLPod(t *testing.T, db *testenv.MariaDB, storages string, annotations map[string]string, env ...string) *mysqlPod {
	podinfo := t.TempDir()
	sock := filepath.Join(testenv.SocketDir(t), "agent.sock")
	testenv.WriteDownwardAPI(t, podinfo, annotations)
	p := &mysqlPod{t: t, db: db, socket: sock, env: []string{"REMORA_STORAGE=" + storages, "REMORA_DRIVER=mysql",
		"REMORA_DSN=" + db.DSN(), "REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=maria-0",
		"REMORA_ANNOTATIONS=" + filepath.Join(podinfo, "annotations"), "REMORA_SOCKET=" + sock, "REMORA_METRICS_ADDR="}}
	p.env = append(p.env, env...)
	p.start()
	return p
}

func (p *mysqlPod) start() {
	ag := clitest.StartAgent(p.t, remora, p.env, p.socket)
	p.agent = ag
	p.t.Cleanup(func() {
		if p.t.Failed() {
			p.t.Logf("agent:\n%s", ag.Logs())
		}
	})
	testenv.WaitFor(p.t, "binary log streaming", time.Minute, func() bool {
		w := clitest.Status(p.t, remora, p.env).WAL
		return w != nil && w.Connected && w.Kind == "binlog"
	})
}

// masterPos is where the server's binary log ends now.
func masterPos(t *testing.T, db *testenv.MariaDB) (string, uint64) {
	t.Helper()
	f := strings.Fields(db.SQL(t, "SHOW MASTER STATUS"))
	if len(f) < 2 {
		t.Fatalf("SHOW MASTER STATUS: %q", f)
	}
	n, _ := strconv.ParseUint(f[1], 10, 64)
	return f[0], n
}

// archived waits until the archive holds the server's binary log up to
// where it ends now.
func (p *mysqlPod) archived() {
	p.t.Helper()
	file, pos := masterPos(p.t, p.db)
	want := fmt.Sprintf("%s@%d", file, pos)
	testenv.WaitFor(p.t, "binary log archived up to "+want, 2*time.Minute, func() bool {
		w := clitest.Status(p.t, remora, p.env).WAL
		if w == nil {
			return false
		}
		gf, gp, ok := strings.Cut(w.Stored, "@")
		n, _ := strconv.ParseUint(gp, 10, 64)
		return ok && (gf > file || gf == file && n >= pos)
	})
}

// checksums are CHECKSUM TABLE's results for the tables, as one string.
func checksums(t *testing.T, db *testenv.MariaDB, tables ...string) string {
	t.Helper()
	return strings.TrimSpace(db.SQL(t, "CHECKSUM TABLE "+strings.Join(tables, ", ")))
}

// nextSecond waits until the server's clock is in a later second than
// now on it, and returns the start of that second: binary log events
// carry whole seconds.
func nextSecond(t *testing.T, db *testenv.MariaDB) time.Time {
	t.Helper()
	now := func() time.Time {
		n, _ := strconv.ParseInt(strings.TrimSpace(db.SQL(t, "SELECT UNIX_TIMESTAMP()")), 10, 64)
		return time.Unix(n, 0)
	}
	start := now()
	testenv.WaitFor(t, "the server's clock to pass a second", 10*time.Second, func() bool { return now().After(start) })
	return start.Add(time.Second)
}

// load writes to two databases until stopped.
func load(t *testing.T, db *testenv.MariaDB) (stop func()) {
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			sql := fmt.Sprintf("INSERT INTO shop.orders (item, qty) VALUES ('load-%d', %d); UPDATE shop.items SET stock = stock - 1 WHERE id = %d; INSERT INTO other.notes (body) VALUES (REPEAT('x', %d))", i, i%7, i%5+1, i%300)
			if _, err := db.SQLErr(sql); err != nil {
				t.Errorf("load: %v", err)
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

var mysqlTables = []string{"shop.orders", "shop.items", "other.notes"}

// TestMySQLPointInTime: the agent streams MariaDB's binary log (ROW
// format) into two storages under a write load, takes a dump that records
// its position, survives its own kill and a server restart without a gap,
// and the CLI restores to a time between two transactions (exactly the
// first: the checksums of every table), to the latest, and one database
// into another name.
func TestMySQLPointInTime(t *testing.T) {
	t.Parallel()
	db := testenv.StartMariaDBWith(t, testenv.MariaDBOptions{LogBin: true})
	db.SQL(t, `CREATE DATABASE shop; CREATE DATABASE other;
		CREATE TABLE shop.orders (id int AUTO_INCREMENT PRIMARY KEY, item varchar(64), qty int);
		CREATE TABLE shop.items (id int PRIMARY KEY, stock int);
		INSERT INTO shop.items VALUES (1, 1000), (2, 1000), (3, 1000), (4, 1000), (5, 1000);
		CREATE TABLE other.notes (id int AUTO_INCREMENT PRIMARY KEY, body text)`)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "binlog")
	dir := t.TempDir()
	s3URL := "s3://binlog/arch?endpoint=" + s3.Endpoint + "&region=" + s3.Region + "&insecure=true"
	p := startMySQLPod(t, db, s3URL+" file://"+dir, map[string]string{"remora.dev/pitr": "on", "remora.dev/pitr-flush": "1s", "remora.dev/retention": "last=1"}, s3.Env()...)

	stop := load(t, db)
	remora.Must(t, p.env, "backup", "--wait")
	stop()
	db.SQL(t, "INSERT INTO shop.orders (item, qty) VALUES ('A', 1); UPDATE other.notes SET body = 'A' WHERE id = 1")
	wantA := checksums(t, db, mysqlTables...)
	target := nextSecond(t, db)
	db.SQL(t, "INSERT INTO shop.orders (item, qty) VALUES ('B', 2); UPDATE shop.items SET stock = 0")
	p.archived()

	// The agent killed mid-file, then the server restarted: no gap.
	db.SQL(t, "INSERT INTO shop.orders (item, qty) VALUES ('C', 3)")
	p.agent.Kill()
	db.SQL(t, "INSERT INTO shop.orders (item, qty) VALUES ('D', 4)")
	p.start()
	p.archived()
	db.Restart(t)
	db.SQL(t, "INSERT INTO shop.orders (item, qty) VALUES ('E', 5)")
	p.archived()
	wantLatest := checksums(t, db, mysqlTables...)

	entries := clitest.List(t, remora, p.env)
	if len(entries) != 1 {
		t.Fatalf("%d backups listed, want 1", len(entries))
	}
	for _, st := range []string{s3URL, "file://" + dir} {
		env := slices.Concat(p.env, []string{"REMORA_STORAGE=" + st})
		if out := remora.Must(t, env, "verify", entries[0].ID).Stdout; !strings.Contains(out, "BINLOG OK") {
			t.Errorf("verify in %s: %s", st, out)
		}
		if out := remora.Must(t, env, "list").Stdout; !strings.Contains(out, "Point in time: restorable from") {
			t.Errorf("list in %s shows no window:\n%s", st, out)
		}
	}
	if out := remora.Must(t, p.env, "status").Stdout; !strings.Contains(out, "Binary log") || !strings.Contains(out, "restorable from") {
		t.Errorf("status:\n%s", out)
	}

	// To a time between A and B, into a new server: exactly A.
	other := testenv.StartMariaDB(t)
	restoreEnv := slices.Concat(p.env, []string{"REMORA_DSN=" + other.DSN(), "REMORA_STORAGE=file://" + dir})
	remora.Must(t, restoreEnv, "restore", "--to-time", target.UTC().Format(time.RFC3339), "--yes")
	if got := checksums(t, other, mysqlTables...); got != wantA {
		t.Errorf("restored to %s:\n%s\nwant (after A):\n%s", target, got, wantA)
	}
	// To the latest, from the other storage: everything, across the kill
	// and the restart.
	latest := testenv.StartMariaDB(t)
	remora.Must(t, slices.Concat(p.env, []string{"REMORA_DSN=" + latest.DSN()}), "restore", "--to-latest", "--yes")
	if got := checksums(t, latest, mysqlTables...); got != wantLatest {
		t.Errorf("restored to the latest:\n%s\nwant:\n%s", got, wantLatest)
	}
	// One database, under another name: only its changes are replayed.
	remora.Must(t, restoreEnv, "restore", "--to-latest", "--database", "shop", "--into", "shop2")
	if got, want := other.SQL(t, "SELECT GROUP_CONCAT(item ORDER BY id) FROM shop2.orders WHERE item NOT LIKE 'load-%'"), "A,B,C,D,E"; strings.TrimSpace(got) != want {
		t.Errorf("shop restored into shop2: %q, want %q", got, want)
	}
	if got := checksums(t, other, "other.notes"); got != strings.Split(wantA, "\n")[2] {
		t.Errorf("a restore of shop changed other.notes: %s", got)
	}

	// Into the server that wrote the log, with gtid_strict_mode on: the
	// replayed transactions are new ones (new GTIDs), not the old ones
	// again, which the server would refuse as out of order.
	db.SQL(t, "SET GLOBAL gtid_strict_mode = ON")
	remora.Must(t, p.env, "restore", "--to-time", target.UTC().Format(time.RFC3339), "--database", "shop", "--into", "shop_then")
	if got, want := checksums(t, db, "shop_then.orders"), strings.Split(wantA, "\n")[0]; strings.Fields(got)[1] != strings.Fields(want)[1] {
		t.Errorf("shop restored into the source server at %s: %s, want the checksum of %s", target, got, want)
	}

	// A second backup in a later file, with retention last=1: the first
	// backup goes, and so do the files only it needed; the second's chain
	// verifies.
	db.SQL(t, "FLUSH BINARY LOGS; INSERT INTO shop.orders (item, qty) VALUES ('F', 6)")
	p.archived()
	before := binlogFiles(t, dir)
	remora.Must(t, p.env, "backup", "--wait")
	entries = clitest.List(t, remora, p.env)
	if len(entries) != 1 {
		t.Fatalf("%d backups after retention last=1", len(entries))
	}
	after := binlogFiles(t, dir)
	if len(after) >= len(before) || slices.Contains(after, "mysql-bin.000001") || !slices.Contains(after, "mysql-bin.000003") {
		t.Errorf("binary log retention: files %v before the second backup, %v after", before, after)
	}
	if out := remora.Must(t, slices.Concat(p.env, []string{"REMORA_STORAGE=file://" + dir}), "verify", entries[0].ID).Stdout; !strings.Contains(out, "BINLOG OK") {
		t.Errorf("verify after retention: %s", out)
	}
}

// binlogFiles are the binary log files archived in a file:// storage.
func binlogFiles(t *testing.T, dir string) []string {
	var out []string
	for _, f := range testenv.FilesUnder(dir) {
		if i := strings.Index(f, "/mysql/binlog/"); i >= 0 && strings.HasSuffix(f, ".json") {
			parts := strings.Split(f[i+len("/mysql/binlog/"):], "/")
			name := parts[1][:strings.LastIndexByte(parts[1], '.')]
			if !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestMySQLBinlogGap: a binary log the server purged before the agent
// stored it is a gap: the agent counts it, verify fails naming it, and a
// restore to a time past it refuses before touching the server.
func TestMySQLBinlogGap(t *testing.T) {
	t.Parallel()
	db := testenv.StartMariaDBWith(t, testenv.MariaDBOptions{LogBin: true})
	db.SQL(t, "CREATE DATABASE shop; CREATE TABLE shop.t (id int PRIMARY KEY)")
	dir := t.TempDir()
	p := startMySQLPod(t, db, "file://"+dir, map[string]string{"remora.dev/pitr": "on", "remora.dev/pitr-flush": "1s"})
	remora.Must(t, p.env, "backup", "--wait")
	db.SQL(t, "INSERT INTO shop.t VALUES (1)")
	p.archived()
	p.agent.Kill()
	db.SQL(t, "INSERT INTO shop.t VALUES (2); FLUSH BINARY LOGS; INSERT INTO shop.t VALUES (3); FLUSH BINARY LOGS")
	file, _ := masterPos(t, db)
	// The server purges a file only once no replica reads it: the killed
	// agent's session ends when the server next writes to it.
	testenv.WaitFor(t, "the binary logs purged", time.Minute, func() bool {
		db.SQL(t, "PURGE BINARY LOGS TO '"+file+"'")
		return len(strings.Split(strings.TrimSpace(db.SQL(t, "SHOW BINARY LOGS")), "\n")) == 1
	})
	p.start()
	testenv.WaitFor(t, "the gap counted", time.Minute, func() bool {
		w := clitest.Status(t, remora, p.env).WAL
		return w != nil && w.Gaps > 0
	})
	db.SQL(t, "INSERT INTO shop.t VALUES (4)")
	p.archived()
	entries := clitest.List(t, remora, p.env)
	r := remora.Run(t, p.env, "verify", entries[0].ID)
	if r.Code == 0 || !strings.Contains(r.Stdout, "binary log gap") {
		t.Errorf("verify across a purged binary log: %s", r)
	}
	if out := remora.Must(t, p.env, "list").Stdout; !strings.Contains(out, "BINARY LOG GAP") {
		t.Errorf("list shows no gap:\n%s", out)
	}
	other := testenv.StartMariaDB(t)
	r = remora.Run(t, slices.Concat(p.env, []string{"REMORA_DSN=" + other.DSN()}), "restore", "--to-latest", "--yes")
	if r.Code == 0 || !strings.Contains(r.Stderr, "nothing restored") {
		t.Errorf("restore across the gap: %s", r)
	}
	if got := other.SQL(t, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'shop'"); strings.TrimSpace(got) != "0" {
		t.Errorf("the refused restore created shop")
	}
}
