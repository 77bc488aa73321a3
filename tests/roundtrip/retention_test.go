package roundtrip

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv/clitest"
)

// TestRetentionFloor: REMORA_RETENTION_MIN (from the storage Secret) keeps
// what it keeps, whatever --retention says; a floor that does not parse is
// refused before anything runs.
func TestRetentionFloor(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "f"), []byte("x"), 0o644)
	env := []string{"REMORA_STORAGE=file://" + t.TempDir(), "REMORA_DRIVER=files", "REMORA_PATHS=" + data,
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=files", "REMORA_RETENTION_MIN=last=3"}
	for range 5 {
		remora.Must(t, env, "backup", "--retention", "last=1")
	}
	if n := len(clitest.List(t, remora, env)); n != 3 {
		t.Fatalf("%d backups left, want the floor's 3", n)
	}
	r := remora.Run(t, append(env, "REMORA_RETENTION_MIN=days=-1"), "backup")
	if r.Code != exitUsage || !strings.Contains(r.Stderr, "REMORA_RETENTION_MIN") {
		t.Fatalf("a bad floor: %s", r)
	}
}
