package roundtrip

import (
	"os"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestPasswordFromEnvironment: with a DSN that has no password, the password
// comes from PGPASSWORD (as for libpq's own tools) or from REMORA_DB_PASSWORD
// (how the webhook hands over the database container's password), and must
// reach both remora's connection and pg_dump/pg_restore; a wrong one is
// refused; and it shows in nothing remora prints or stores.
func TestPasswordFromEnvironment(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	testenv.SeedOdd(t, pg, "odd")
	want := testenv.Checksums(t, pg, "odd")
	dir := t.TempDir()
	env := []string{"REMORA_STORAGE=file://" + dir, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSNNoPassword("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=odd", "PGPASSWORD=", "REMORA_DB_PASSWORD="}
	with := func(kv ...string) []string { return append(append([]string{}, env...), kv...) }

	r := remora.Run(t, with("PGPASSWORD=wrong-"+testenv.Canary), "backup")
	if r.Code != 1 || !strings.Contains(r.Stderr, `login as "postgres" refused`) {
		t.Fatalf("backup with a wrong PGPASSWORD: %s", r)
	}

	remora.Must(t, with("PGPASSWORD="+testenv.Canary), "backup")
	remora.Must(t, with("PGPASSWORD="+testenv.Canary), "restore", "--latest", "--into", "odd_pgpassword")
	testenv.SameChecksums(t, "password from PGPASSWORD", want, testenv.Checksums(t, pg, "odd_pgpassword"))

	remora.Must(t, with("REMORA_DB_PASSWORD="+testenv.Canary), "backup")
	remora.Must(t, with("REMORA_DB_PASSWORD="+testenv.Canary), "restore", "--latest", "--into", "odd_dbpassword")
	testenv.SameChecksums(t, "password from REMORA_DB_PASSWORD", want, testenv.Checksums(t, pg, "odd_dbpassword"))

	if n := len(clitest.List(t, remora, env)); n != 2 {
		t.Errorf("%d backups listed, want 2", n)
	}
	for _, f := range testenv.FilesUnder(dir) {
		if strings.HasSuffix(f, ".json") {
			b, _ := os.ReadFile(f)
			testenv.NoCanary(t, f, string(b))
		}
	}
}
