package roundtrip

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestRestoreInPlace: a restore onto existing databases needs --yes; a full
// restore brings back roles and every database as it was.
func TestRestoreInPlace(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	testenv.SeedOdd(t, pg, "odd")
	want := testenv.Checksums(t, pg, "odd")
	env := []string{"REMORA_STORAGE=file://" + t.TempDir(), "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0"}
	remora.Must(t, env, "backup")

	// Damage the database and drop the role.
	pg.Psql(t, "odd", "DELETE FROM odd WHERE id % 3 = 0; REVOKE ALL ON odd FROM app_reader; CREATE TABLE later (x int)")
	pg.Psql(t, "postgres", "DROP OWNED BY app_reader CASCADE; DROP ROLE app_reader")
	damaged := testenv.Checksums(t, pg, "odd")

	r := remora.Run(t, env, "restore", "--latest")
	if r.Code == 0 || !strings.Contains(r.Stderr, "--yes") {
		t.Fatalf("restore without --yes: %s", r)
	}
	if got := testenv.Checksums(t, pg, "odd"); got["public.odd"] != damaged["public.odd"] {
		t.Fatal("restore without --yes changed the database")
	}
	r = remora.Run(t, env, "restore", "--latest", "--database", "odd")
	if r.Code == 0 || !strings.Contains(r.Stderr, `database "odd" exists`) {
		t.Fatalf("restore --database odd without --yes: %s", r)
	}

	remora.Must(t, env, "restore", "--latest", "--yes")
	got := testenv.Checksums(t, pg, "odd")
	delete(got, "public.later") // a table made after the backup is kept, as pg_restore --clean does
	testenv.SameChecksums(t, "full restore", want, got)
	if n := pg.Psql(t, "postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'app_reader'"); n != "1" {
		t.Errorf("role app_reader not restored (%s)", n)
	}
}

// TestCorruptBackup: one flipped byte makes verify fail and restore refuse,
// and a restore that meets the damage leaves the target as it was.
func TestCorruptBackup(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	testenv.SeedOdd(t, pg, "odd")
	want := testenv.Checksums(t, pg, "odd")
	dir := t.TempDir()
	env := testenv.PgEnv(pg, "file://"+dir)
	remora.Must(t, env, "backup")
	id := clitest.List(t, remora, env)[0].ID
	obj := filepath.Join(dir, "shop/db-0/postgres", id, "databases/odd.dump.zst")
	flipByte(t, obj)

	r := remora.Run(t, env, "verify")
	if r.Code != exitCorrupt || !strings.Contains(r.Stdout, "CORRUPT") || !strings.Contains(r.Stderr, "odd.dump.zst") {
		t.Fatalf("verify of a corrupt backup: %s", r)
	}
	if it := clitest.List(t, remora, env)[0]; it.Verified || it.Verification == nil || it.Verification.OK {
		t.Fatalf("list after a failed verify: %+v", it)
	}
	r = remora.Run(t, env, "restore", id, "--database", "odd", "--into", "copy1")
	if r.Code != exitCorrupt || !strings.Contains(r.Stderr, "failed its last verification") {
		t.Fatalf("restore of a backup that failed verify: %s", r)
	}

	// Without the verify record, the restore itself finds the damage while
	// it streams, and the half-loaded database is dropped.
	if err := os.Remove(filepath.Join(filepath.Dir(filepath.Dir(obj)), "verified.json")); err != nil {
		t.Fatal(err)
	}
	r = remora.Run(t, env, "restore", id, "--database", "odd", "--into", "copy2")
	if r.Code != exitCorrupt {
		t.Fatalf("restore of a corrupt object: %s", r)
	}
	if n := pg.Psql(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'copy2'"); n != "0" {
		t.Fatal("a failed restore left the new database behind")
	}
	// Onto the existing database with --yes: nothing changes.
	r = remora.Run(t, env, "restore", id, "--database", "odd", "--yes")
	if r.Code != exitCorrupt {
		t.Fatalf("in-place restore of a corrupt object: %s", r)
	}
	testenv.SameChecksums(t, "after a failed in-place restore", want, testenv.Checksums(t, pg, "odd"))
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStandardTools restores the stored objects with zstd, pg_restore and psql
// alone, as the README shows.
func TestStandardTools(t *testing.T) {
	t.Parallel()
	zstd, err := exec.LookPath("zstd")
	if err != nil {
		testenv.Missing(t, "zstd", "apt-get install zstd")
	}
	pg := testenv.StartPostgres(t)
	testenv.SeedOdd(t, pg, "odd")
	want := testenv.Checksums(t, pg, "odd")
	dir := t.TempDir()
	env := testenv.PgEnv(pg, "file://"+dir)
	remora.Must(t, env, "backup")
	bdir := filepath.Join(dir, "shop/db-0/postgres", clitest.List(t, remora, env)[0].ID)

	// A new server: roles first, then the database.
	pg2 := testenv.StartPostgres(t)
	sh := func(script string) {
		t.Helper()
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = bdir
		cmd.Env = append(os.Environ(), "PATH="+pg2.Bin+":"+os.Getenv("PATH"), "ZSTD="+zstd,
			"PGHOST="+pg2.SocketDir, "PGPORT="+strconv.Itoa(pg2.Port), "PGUSER=postgres")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	sh(`$ZSTD -dc globals.sql.zst | psql -X -q -d postgres -f - 2>&1 | grep -v 'role "postgres" already exists' || true`)
	sh(`createdb odd && $ZSTD -dc databases/odd.dump.zst | pg_restore --exit-on-error -d odd`)
	testenv.SameChecksums(t, "zstd -d | pg_restore", want, testenv.Checksums(t, pg2, "odd"))
}
