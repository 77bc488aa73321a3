package failure

import (
	"context"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestKillMidUpload kills `remora backup` with SIGKILL while an object is being
// uploaded: list shows nothing new, and the next backup succeeds.
func TestKillMidUpload(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	testenv.SeedRandom(t, pg, "rnd", 96)
	fileDir := t.TempDir()

	for _, tc := range []struct {
		name, storage string
		env           []string
		uploading     func() bool // an upload of the big object is under way
	}{
		{"s3", s3.URL("backups", "kill") + "&part-size=5MiB", s3.Env(), func() bool {
			ctx := context.Background()
			core := &minio.Core{Client: s3.Client(t)}
			for u := range core.ListIncompleteUploads(ctx, "backups", "kill/", true) {
				if u.Err != nil {
					continue
				}
				parts, err := core.ListObjectParts(ctx, "backups", u.Key, u.UploadID, 0, 10)
				if err == nil && len(parts.ObjectParts) > 0 {
					return true // at least one part is stored
				}
			}
			return false
		}},
		{"file", "file://" + fileDir, nil, func() bool {
			return testenv.Writing(fileDir, "rnd.dump.zst.remora-tmp-", 5<<20)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(tc.env, "REMORA_STORAGE="+tc.storage, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd")
			remora.Must(t, env, "backup")
			before := clitest.List(t, remora, env)
			if len(before) != 1 {
				t.Fatalf("want 1 backup, have %d", len(before))
			}
			cmd := remora.Command(env, "backup")
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(60 * time.Second)
			for !tc.uploading() {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatal("the upload never started")
				}
				time.Sleep(5 * time.Millisecond)
			}
			cmd.Process.Signal(syscall.SIGKILL)
			err := cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
				t.Fatalf("backup was not killed mid-upload (it ended first: %v)", err)
			}

			after := clitest.List(t, remora, env)
			if len(after) != 1 || after[0].ID != before[0].ID {
				t.Fatalf("after the kill, list shows %d backups: %+v", len(after), after)
			}
			if r := remora.Run(t, env, "restore", "--latest", "--into", "rnd_copy"); r.Code != 0 {
				t.Fatalf("restore of the earlier backup after the kill: %s", r)
			}
			pg.Psql(t, "postgres", "DROP DATABASE rnd_copy")

			remora.Must(t, env, "backup")
			if got := clitest.List(t, remora, env); len(got) != 2 {
				t.Fatalf("after the next backup, list shows %d backups, want 2", len(got))
			}
			remora.Must(t, env, "verify", "--all")
		})
	}
}
