package drill_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/drill"
	"remora.dev/remora/drivers"
	_ "remora.dev/remora/drivers/files"
	_ "remora.dev/remora/drivers/mysql"
	_ "remora.dev/remora/drivers/postgres"
	_ "remora.dev/remora/drivers/redis"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/file"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// backup takes one backup with driver name and cfg into a new file storage
// and returns the storage and the backup's entry.
func backup(t *testing.T, name string, cfg drivers.Config) (st storage.Storage, e *repo.Entry, root string) {
	t.Helper()
	ctx := context.Background()
	root = t.TempDir()
	st, err := storage.Open(ctx, "file://"+root, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	drv, err := drivers.New(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	scope := repo.Scope{Namespace: "ns", Workload: "db-0", Driver: name, Method: cfg.Method}
	if _, err := repo.Backup(ctx, repo.BackupOptions{Scope: scope, Driver: drv, Destinations: []repo.Destination{{Storage: st}}}); err != nil {
		t.Fatal(err)
	}
	return st, latest(t, st, scope), root
}

func latest(t *testing.T, st storage.Storage, scope repo.Scope) *repo.Entry {
	t.Helper()
	entries, err := repo.List(context.Background(), st, scope, repo.Trust{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := repo.Select(entries, repo.Selector{Latest: true})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run drills e and checks that nothing is left in the drill's directory.
func run(t *testing.T, st storage.Storage, e *repo.Entry) repo.Drill {
	t.Helper()
	tmp := t.TempDir()
	// A server run as another user (the tests run as root) must reach it.
	os.Chmod(tmp, 0o755)
	os.Chmod(filepath.Dir(tmp), 0o755)
	d, err := drill.Run(context.Background(), st, e, drill.Options{TempDir: tmp, User: "postgres"})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("the drill left %d entries behind in its directory", len(left))
	}
	return d
}

func wantOK(t *testing.T, d repo.Drill, checks ...string) {
	t.Helper()
	if !d.OK {
		t.Fatalf("the drill failed: %v", d.Problems)
	}
	for _, what := range checks {
		found := false
		for _, c := range d.Checks {
			found = found || c.What == what && c.OK
		}
		if !found {
			t.Errorf("no passing check %q in %+v", what, d.Checks)
		}
	}
	if d.PeakRSSBytes <= 0 && d.Checks[0].Object != "files.tar" {
		t.Errorf("peak memory not measured: %d", d.PeakRSSBytes)
	}
}

// TestDrillPasses: a drill of each driver's backup restores it into a
// throwaway server and finds what the dump recorded.
func TestDrillPasses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) (string, drivers.Config)
		want  []string
	}{
		{"postgres", func(t *testing.T) (string, drivers.Config) {
			pg := testenv.StartPostgres(t)
			pg.Psql(t, "postgres", "CREATE DATABASE app")
			pg.Psql(t, "app", `CREATE TABLE customers (id int PRIMARY KEY); CREATE TABLE "Odd Name" (x int);
				CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers);
				INSERT INTO customers SELECT generate_series(1, 300); INSERT INTO orders SELECT i, 1 + i % 300 FROM generate_series(1, 1200) i;
				INSERT INTO "Odd Name" VALUES (1), (2)`)
			return "postgres", drivers.Config{DSN: pg.DSN("postgres"), Databases: []string{"app"}}
		}, []string{`rows of "public"."orders"`, `rows of "public"."customers"`, `rows of "public"."Odd Name"`}},
		{"postgres physical", func(t *testing.T) (string, drivers.Config) {
			pg := testenv.StartPostgres(t)
			pg.Psql(t, "postgres", "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)")
			return "postgres", drivers.Config{DSN: pg.DSN("postgres"), Method: drivers.MethodPhysical}
		}, []string{"readable"}},
		{"mysql", func(t *testing.T) (string, drivers.Config) {
			db := testenv.StartMariaDB(t)
			db.SQL(t, "CREATE DATABASE shop; USE shop; CREATE TABLE shop.items (id int PRIMARY KEY, note text); CREATE TABLE shop.`empty``one` (id int);"+
				"INSERT INTO shop.items SELECT seq, CONCAT('it''s (', seq, '),\\n(') FROM seq_1_to_2500")
			return "mysql", drivers.Config{DSN: db.DSN(), Databases: []string{"shop"}}
		}, []string{"rows of `items`", "rows of `empty``one`"}},
		{"redis", func(t *testing.T) (string, drivers.Config) {
			r := testenv.StartRedis(t)
			c := r.Client()
			defer c.Close()
			for i := range 50 {
				c.Set(context.Background(), "k"+string(rune('a'+i%26))+strings.Repeat("x", i), i, 0)
			}
			c.Do(context.Background(), "SELECT", "3")
			return "redis", drivers.Config{DSN: r.DSN()}
		}, []string{"keys of db0"}},
		{"files", func(t *testing.T) (string, drivers.Config) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alpha"), 0o644)
			os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
			os.WriteFile(filepath.Join(dir, "sub", "b.bin"), []byte(strings.Repeat("b", 100000)), 0o600)
			os.Link(filepath.Join(dir, "a.txt"), filepath.Join(dir, "sub", "a-link"))
			return "files", drivers.Config{Paths: []string{dir}}
		}, []string{"files", "bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, cfg := tc.setup(t)
			st, e, _ := backup(t, name, cfg)
			d := run(t, st, e)
			wantOK(t, d, tc.want...)
		})
	}
}

// TestDrillFailsABackupThatDoesNotRestore: a pg_dump taken with
// --exclude-table of a table another table's foreign key references
// verifies (its checksums are right) but does not restore; its drill fails
// and says why.
func TestDrillFailsABackupThatDoesNotRestore(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE DATABASE app")
	pg.Psql(t, "app", `CREATE TABLE customers (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers);
		INSERT INTO customers VALUES (1); INSERT INTO orders VALUES (1, 1)`)
	st, e, _ := backup(t, "postgres", drivers.Config{DSN: pg.DSN("postgres"), Databases: []string{"app"}, DumpArgs: []string{"--exclude-table=customers"}})
	if err := repo.Verify(context.Background(), st, e, repo.VerifyOptions{}); err != nil {
		t.Fatalf("the backup should verify: %v", err)
	}
	d := run(t, st, e)
	if d.OK {
		t.Fatalf("the drill passed: %+v", d)
	}
	msg := strings.Join(d.Problems, "; ")
	if !strings.Contains(msg, "restore of databases/app.dump failed") || !strings.Contains(msg, "customers") {
		t.Errorf("the reason does not say which restore failed and why: %s", msg)
	}
}

// TestDrillFailsOnATamperedCount: a row count changed in the manifest
// (storage trusted, unsigned) makes the drill fail naming the table.
func TestDrillFailsOnATamperedCount(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE DATABASE app")
	pg.Psql(t, "app", "CREATE TABLE ledger (id int); INSERT INTO ledger SELECT generate_series(1, 10)")
	st, e, root := backup(t, "postgres", drivers.Config{DSN: pg.DSN("postgres"), Databases: []string{"app"}})
	path := filepath.Join(root, e.Manifest.Dir(), repo.ManifestName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tampered := strings.Replace(string(b), `"check.rows.\"public\".\"ledger\"": "10"`, `"check.rows.\"public\".\"ledger\"": "11"`, 1)
	if tampered == string(b) {
		t.Fatalf("no row count for ledger in the manifest:\n%s", b)
	}
	if err := os.WriteFile(path, []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	scope := repo.Scope{Namespace: "ns", Workload: "db-0", Driver: "postgres"}
	d := run(t, st, latest(t, st, scope))
	if d.OK || !strings.Contains(strings.Join(d.Problems, "; "), `rows of "public"."ledger": want 11, got 10`) {
		t.Fatalf("the drill did not fail naming the table: %+v", d)
	}
}
