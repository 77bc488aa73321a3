package sftp_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/sftp"
	"remora.dev/remora/storage/storagetest"
)

// mkdir makes a directory below the user's home, owned by the user.
func mkdir(t *testing.T, srv *testenv.SFTP, name string) string {
	t.Helper()
	p := filepath.Join(srv.Home, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid(t, srv.Home), -1); err != nil {
		t.Fatal(err)
	}
	return p
}

func uid(t *testing.T, p string) int {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

func TestSFTP(t *testing.T) {
	srv := testenv.StartSFTP(t)
	for _, auth := range []string{"password", "key"} {
		t.Run(auth, func(t *testing.T) {
			srv.SetEnv(t)
			if auth == "key" {
				t.Setenv("REMORA_SFTP_PASSWORD", "")
				os.Unsetenv("REMORA_SFTP_PASSWORD")
				t.Setenv("REMORA_SFTP_KEY", string(srv.Key))
			}
			var n atomic.Int32
			storagetest.Run(t, func(t *testing.T) storage.Storage {
				dir := mkdir(t, srv, auth+"-"+strconv.Itoa(int(n.Add(1))))
				s, err := storage.Open(context.Background(), srv.URL(dir), storage.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}
