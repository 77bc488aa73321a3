package roundtrip

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestSMBRoundTrip backs a Redis server up to an SMB share (a real smbd),
// verifies the backup and restores it, with the password only in
// REMORA_SMB_PASSWORD: it never shows in the output, and no temporary file
// is left in the share.
func TestSMBRoundTrip(t *testing.T) {
	t.Parallel()
	srv := testenv.StartSMB(t)
	r := testenv.StartRedis(t)
	seedRedis(t, r)
	want := redisState(t, r)
	env := append(srv.Env(), "REMORA_STORAGE="+srv.URL(srv.Share, ""), "REMORA_DRIVER=redis", "REMORA_DSN="+r.DSN(),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=redis-smb")
	var out []string
	run := func(args ...string) {
		t.Helper()
		res := remora.Must(t, env, args...)
		out = append(out, res.Stdout, res.Stderr)
	}
	run("backup")
	if items := clitest.List(t, remora, env); len(items) != 1 {
		t.Fatalf("list: %+v", items)
	}
	run("verify")
	c := r.Client()
	defer c.Close()
	c.FlushAll(context.Background())
	run("restore", "--latest", "--yes")
	sameRedis(t, "after the restore from SMB", want, redisState(t, r))
	if strings.Contains(strings.Join(out, ""), testenv.Canary) {
		t.Error("the SMB password appears in remora's output")
	}
	filepath.WalkDir(srv.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".remora-tmp-") {
			t.Errorf("temporary file left in the share: %s", p)
		}
		return nil
	})
}
