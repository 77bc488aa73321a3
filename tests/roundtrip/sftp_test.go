package roundtrip

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"remora.dev/remora/internal/testenv"
)

// TestSFTPRoundTrip archives a tree to an SFTP server (OpenSSH), logging in
// with a key held in a variable as a storage Secret gives it, verifies it and
// restores it with --into.
func TestSFTPRoundTrip(t *testing.T) {
	t.Parallel()
	srv := testenv.StartSFTP(t)
	store := filepath.Join(srv.Home, "backups")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(store, uidOf(t, srv.Home), -1); err != nil {
		t.Fatal(err)
	}
	known, err := os.ReadFile(srv.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "data")
	makeTree(t, src)
	want := describeTree(t, src)
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"key", []string{"REMORA_SFTP_KEY=" + string(srv.Key), "REMORA_SFTP_KNOWN_HOSTS=" + string(known)}},
		{"password", srv.Env()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(tc.env, "REMORA_STORAGE="+srv.URL(store), "REMORA_DRIVER=files", "REMORA_PATHS="+src,
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=app-"+tc.name)
			remora.Must(t, env, "backup")
			remora.Must(t, env, "verify")
			into := filepath.Join(t.TempDir(), "restored")
			remora.Must(t, env, "restore", "--latest", "--into", into)
			sameTree(t, "restore --into", want, describeTree(t, filepath.Join(into, strings.TrimPrefix(src, "/"))))
		})
	}
}

func uidOf(t *testing.T, p string) int {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}
