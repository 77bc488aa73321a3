package postgres_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"remora.dev/remora/drivers"
	_ "remora.dev/remora/drivers/files"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// baseBackup takes a physical backup of pg into a file and returns the
// object, its Meta filled, and the file.
func baseBackup(t *testing.T, pg *testenv.Postgres) (drivers.Object, string) {
	t.Helper()
	ctx := context.Background()
	d, err := drivers.New(postgres.Name, drivers.Config{DSN: pg.DSN("postgres"), Method: drivers.MethodPhysical})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := d.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Objects) != 1 || plan.Objects[0].Kind != drivers.KindPhysical {
		t.Fatalf("plan: %+v", plan.Objects)
	}
	obj := plan.Objects[0]
	path := filepath.Join(t.TempDir(), "base.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	meta, err := drivers.DumpMeta(ctx, d, obj, f)
	if err != nil {
		t.Fatal(err)
	}
	obj.Meta = meta
	return obj, path
}

func open(t *testing.T, path string) io.Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestBaseBackupRestoresIntoANewDataDirectory: a base backup with a
// tablespace, checked against its backup_manifest, unpacked into a new
// directory (the tablespace mapped elsewhere, its old place being in use),
// starts as a server holding the same rows.
func TestBaseBackupRestoresIntoANewDataDirectory(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ts := pg.ServerDir(t)
	pg.Psql(t, "postgres", "CREATE TABLESPACE spaced LOCATION '"+ts+"'")
	testenv.SeedOdd(t, pg, "app")
	pg.Psql(t, "app", "CREATE TABLE far (id int PRIMARY KEY, v text) TABLESPACE spaced; INSERT INTO far SELECT i, md5(i::text) FROM generate_series(1, 5000) i")
	oid := pg.Psql(t, "postgres", "SELECT oid FROM pg_tablespace WHERE spcname = 'spaced'")
	want := testenv.Checksums(t, pg, "app")

	obj, path := baseBackup(t, pg)
	for _, k := range []string{postgres.MetaStartLSN, postgres.MetaStopLSN, postgres.MetaTimeline, postgres.MetaSystemIdentifier,
		postgres.MetaWALSegmentSize, postgres.MetaServerVersion, postgres.MetaStartTime, postgres.MetaStopTime} {
		if obj.Meta[k] == "" {
			t.Errorf("Meta[%s] is empty: %v", k, obj.Meta)
		}
	}
	if obj.Meta[postgres.MetaTablespacePrefix+oid] != ts {
		t.Errorf("Meta has tablespace %s at %q, want %q", oid, obj.Meta[postgres.MetaTablespacePrefix+oid], ts)
	}
	if err := postgres.CheckBaseTar(context.Background(), obj, open(t, path)); err != nil {
		t.Fatalf("check: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	moved := filepath.Join(t.TempDir(), "spaced")
	err := postgres.ExtractBaseTar(context.Background(), obj, open(t, path), drivers.ExtractOptions{Dir: dir, Tablespaces: map[string]string{oid: moved}})
	if err != nil {
		t.Fatalf("extract: %v", err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data directory: %v, mode %v", err, st.Mode())
	}
	pg2 := testenv.StartPostgresOn(t, dir)
	// The server links its tablespaces from tablespace_map as it starts.
	if link, err := os.Readlink(filepath.Join(dir, "pg_tblspc", oid)); err != nil || link != moved {
		t.Errorf("pg_tblspc/%s -> %q (%v), want %s", oid, link, err, moved)
	}
	testenv.SameChecksums(t, "restored", want, testenv.Checksums(t, pg2, "app"))
	if got := pg2.Psql(t, "postgres", "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'spaced'"); got != moved {
		t.Errorf("tablespace location %q, want %q", got, moved)
	}
}

// TestExtractRefusesAnExistingDataDirectory: a directory that holds
// anything is never touched, and nothing is left beside it.
func TestExtractRefusesAnExistingDataDirectory(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "data")
	os.Mkdir(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600)
	err := postgres.ExtractBaseTar(context.Background(), drivers.Object{Format: postgres.FormatBaseTar}, strings.NewReader(""), drivers.ExtractOptions{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "not empty") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want one line saying it is not empty", err)
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 {
		t.Errorf("the parent holds %d entries, want the data directory alone", len(entries))
	}
}

// TestPhysicalBackupRefusals: what keeps a server from giving a base
// backup is said in one line naming what to change.
func TestPhysicalBackupRefusals(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE ROLE plain LOGIN PASSWORD 'plain-pw'")
	minimal := testenv.StartPostgresWith(t, "wal_level=minimal", "max_wal_senders=0")
	for _, tc := range []struct {
		name, dsn, want string
	}{
		{"no REPLICATION", "postgres://plain:plain-pw@127.0.0.1:" + itoa(pg.Port) + "/postgres", `ALTER ROLE "plain" REPLICATION`},
		{"wal_level minimal", minimal.DSN("postgres"), "set wal_level = replica"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := drivers.New(postgres.Name, drivers.Config{DSN: tc.dsn, Method: drivers.MethodPhysical})
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.Plan(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "plain-pw") {
				t.Fatalf("err = %v, want one line with %q", err, tc.want)
			}
		})
	}
}

// TestPhysicalIsPostgresOnly: another driver refuses --method physical.
func TestPhysicalIsPostgresOnly(t *testing.T) {
	_, err := drivers.New("files", drivers.Config{Paths: []string{"/tmp"}, Method: drivers.MethodPhysical})
	if err == nil || !strings.Contains(err.Error(), "postgres") {
		t.Fatalf("err = %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
