package sftp_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// TestSweepAndNow: Sweep removes only old temporary files below the prefix;
// Now reads the server's clock.
func TestSweepAndNow(t *testing.T) {
	srv := testenv.StartSFTP(t)
	srv.SetEnv(t)
	ctx := context.Background()
	dir := mkdir(t, srv, "sweep")
	st, err := storage.Open(ctx, srv.URL(dir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "a/kept", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "a", ".x.remora-tmp-abc") // as a killed Put leaves it
	if err := os.WriteFile(leftover, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	now, err := st.(storage.Clock).Now(ctx)
	if err != nil || time.Since(now).Abs() > time.Hour {
		t.Fatalf("Now = %v, %v", now, err)
	}
	sw := st.(storage.Sweeper)
	if n, err := sw.Sweep(ctx, "a/", now.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Sweep of fresh leftovers: %d, %v", n, err)
	}
	if n, err := sw.Sweep(ctx, "a/", now.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Sweep of old leftovers: %d, %v", n, err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("the leftover is still there: %v", err)
	}
	if _, err := st.Stat(ctx, "a/kept"); err != nil {
		t.Fatalf("Sweep removed an object: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("Now left a file behind: %v", ents)
	}
}
