package roundtrip

import (
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
)

// TestGCSRoundTrip backs a file tree up to a gs:// URL on the GCS emulator,
// verifies it and restores it with --into, with the remora binary.
func TestGCSRoundTrip(t *testing.T) {
	t.Parallel()
	gcs := testenv.StartGCS(t)
	gcs.MakeBucket(t, "backups")
	src := filepath.Join(t.TempDir(), "data")
	makeTree(t, src)
	want := describeTree(t, src)
	env := []string{"REMORA_STORAGE=" + gcs.URL("backups", "files"), "REMORA_DRIVER=files", "REMORA_PATHS=" + src,
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=app-0"}
	remora.Must(t, env, "backup")
	remora.Must(t, env, "verify")
	into := filepath.Join(t.TempDir(), "restored")
	remora.Must(t, env, "restore", "--latest", "--into", into)
	sameTree(t, "restore --into from gs://", want, describeTree(t, filepath.Join(into, strings.TrimPrefix(src, "/"))))

	// A bucket that does not exist fails the backup with one line.
	bad := append(env[1:], "REMORA_STORAGE="+gcs.URL("missing", "files"))
	if r := remora.Run(t, bad, "backup"); r.Code == 0 || !strings.Contains(r.Stderr, `bucket "missing" does not exist`) {
		t.Fatalf("backup to a missing bucket: %s", r)
	}
}
