package failure

import (
	"os/exec"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// tmpfs mounts a tmpfs of the given size (the tests run as root) and unmounts
// it when the test ends.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "remora-test", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, "a tmpfs mount (the disk-full test runs as root)", strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestDiskFull: file:// storage on a small tmpfs fills up part way through a
// backup: the run fails with a clear error, what it wrote is removed, the
// earlier backup is intact and still restores, and once there is room again
// the next backup succeeds.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	dir := tmpfs(t, "24m")
	testenv.SeedRandom(t, pg, "rnd", 6)
	env := []string{"REMORA_STORAGE=file://" + dir, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd"}
	remora.Must(t, env, "backup")
	first := clitest.List(t, remora, env)
	want := testenv.Checksums(t, pg, "rnd")

	// Grow the database past what is left on the volume.
	maxID := pg.Psql(t, "rnd", "SELECT max(id) FROM rnd")
	pg.Psql(t, "rnd", "INSERT INTO rnd (b) SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, 2048) g, generate_series(1, 600) r GROUP BY r")
	r := remora.Run(t, env, "backup")
	if r.Code != 1 || !strings.Contains(r.Stderr, "no space left on device") || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 3 {
		t.Fatalf("backup onto a full volume: %s", r)
	}
	if got := clitest.List(t, remora, env); len(got) != 1 || got[0].ID != first[0].ID {
		t.Fatalf("after the failed backup, list shows %+v", got)
	}
	for _, f := range testenv.FilesUnder(dir) {
		if !strings.Contains(f, first[0].ID) {
			t.Errorf("left on the full volume: %s", f)
		}
	}
	remora.Must(t, env, "verify", "--all")
	remora.Must(t, env, "restore", first[0].ID, "--into", "rnd_copy")
	if got := testenv.Checksums(t, pg, "rnd_copy"); len(got) != len(want) {
		t.Fatalf("restore of the earlier backup: %v", got)
	}
	t.Logf("disk full: %s", strings.TrimSpace(r.Stderr))

	// With the database small again, the next backup fits and succeeds.
	pg.Psql(t, "rnd", "DELETE FROM rnd WHERE id > "+maxID)
	remora.Must(t, env, "backup")
	if got := clitest.List(t, remora, env); len(got) != 2 {
		t.Fatalf("after room was made, %d backups listed", len(got))
	}
}
