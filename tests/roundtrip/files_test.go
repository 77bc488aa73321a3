package roundtrip

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// makeTree builds a directory with what a file backup must keep: modes
// (setuid too), owners, times to the nanosecond, symlinks, hard links, an
// empty file, a unicode name and a 100 MiB file of random bytes.
func makeTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "uploads/2026/ü"), 0o755))
	must(os.Mkdir(filepath.Join(root, "private"), 0o750))
	must(os.WriteFile(filepath.Join(root, "uploads/2026/ü/ñame with space.txt"), []byte("hello\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "private/secret.conf"), []byte("k=v\n"), 0o600))
	must(os.WriteFile(filepath.Join(root, "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(filepath.Join(root, "run.sh"), 0o4755|fs.ModeSetuid))
	must(os.WriteFile(filepath.Join(root, "empty"), nil, 0o640))
	big, err := os.Create(filepath.Join(root, "big.bin"))
	must(err)
	_, err = io.CopyN(big, rand.Reader, 100<<20)
	must(err)
	must(big.Close())
	must(os.Link(filepath.Join(root, "uploads/2026/ü/ñame with space.txt"), filepath.Join(root, "hardlink.txt")))
	must(os.Symlink("uploads/2026", filepath.Join(root, "latest")))
	must(os.Symlink("/etc/hostname", filepath.Join(root, "absolute-link")))
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(root, "private/secret.conf"), 1234, 5678))
		must(os.Lchown(filepath.Join(root, "latest"), 4321, 8765))
	}
	when := time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			os.Chtimes(p, when, when)
		}
		return nil
	})
	for _, dir := range []string{"uploads/2026/ü", "uploads/2026", "uploads", "private", "."} {
		os.Chtimes(filepath.Join(root, dir), when, when)
	}
}

// describeTree lists every path below root with its type, mode, owner, time,
// link target, content hash, and which paths share an inode.
func describeTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64][]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		info, _ := os.Lstat(p)
		st := info.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v uid=%d gid=%d", info.Mode(), st.Uid, st.Gid)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case info.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			desc += fmt.Sprintf(" mtime=%s sha256=%x", info.ModTime().UTC().Format(time.RFC3339Nano), sha256.Sum256(b))
			inodes[st.Ino] = append(inodes[st.Ino], rel)
		case info.IsDir() && rel != ".":
			desc += " mtime=" + info.ModTime().UTC().Format(time.RFC3339Nano)
		}
		out[rel] = desc
		return nil
	})
	for _, names := range inodes {
		if len(names) > 1 {
			slices.Sort(names)
			out["hard links "+strings.Join(names, " = ")] = "linked"
		}
	}
	return out
}

func sameTree(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for k, v := range want {
		if k == "." {
			continue
		}
		if got[k] != v {
			t.Errorf("%s: %s: got %q, want %q", what, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
}

// TestFilesRoundTrip archives a tree to S3 and to a directory, restores it
// with --into, in place with --yes, and with zstd -d | tar -x alone.
func TestFilesRoundTrip(t *testing.T) {
	t.Parallel()
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	src := filepath.Join(t.TempDir(), "data")
	makeTree(t, src)
	want := describeTree(t, src)
	fileStore := t.TempDir()

	for _, tc := range []struct {
		name, storage string
		env           []string
	}{
		{"s3", s3.URL("backups", "files"), s3.Env()},
		{"file", "file://" + fileStore, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(tc.env, "REMORA_STORAGE="+tc.storage, "REMORA_DRIVER=files", "REMORA_PATHS="+src,
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=app-0")
			remora.Must(t, env, "backup")
			remora.Must(t, env, "verify")
			into := filepath.Join(t.TempDir(), "restored")
			remora.Must(t, env, "restore", "--latest", "--into", into)
			sameTree(t, "restore --into", want, describeTree(t, filepath.Join(into, strings.TrimPrefix(src, "/"))))

			// In place: refused without --yes, then put back as it was.
			os.WriteFile(filepath.Join(src, "private/secret.conf"), []byte("changed"), 0o666)
			os.Remove(filepath.Join(src, "latest"))
			if r := remora.Run(t, env, "restore", "--latest"); r.Code == 0 || !strings.Contains(r.Stderr, "--yes") {
				t.Fatalf("in-place restore without --yes: %s", r)
			}
			remora.Must(t, env, "restore", "--latest", "--yes")
			os.Chtimes(src, time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC), time.Date(2020, 1, 2, 3, 4, 5, 123456789, time.UTC))
			sameTree(t, "restore in place", want, describeTree(t, src))
		})
	}

	// Standard tools.
	zstd, err := exec.LookPath("zstd")
	if err != nil {
		testenv.Missing(t, "zstd", "apt-get install zstd")
	}
	env := []string{"REMORA_STORAGE=file://" + fileStore, "REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=app-0"}
	obj := filepath.Join(fileStore, "shop/app-0/files", clitest.List(t, remora, env)[0].ID, "files.tar.zst")
	out := t.TempDir()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", `"$ZSTD" -dc "$OBJ" | tar -x -p -C "$OUT"`)
	cmd.Env = append(os.Environ(), "ZSTD="+zstd, "OBJ="+obj, "OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zstd -d | tar -x: %v\n%s", err, b)
	}
	sameTree(t, "zstd -d | tar -x", want, describeTree(t, filepath.Join(out, strings.TrimPrefix(src, "/"))))
}

// TestExtraFiles: --paths adds the files to a database backup.
func TestExtraFiles(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	src := filepath.Join(t.TempDir(), "conf")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "postgresql.conf"), []byte("shared_buffers = 1GB\n"), 0o644)
	env := []string{"REMORA_STORAGE=file://" + t.TempDir(), "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_PATHS=" + src}
	remora.Must(t, env, "backup")
	item := clitest.List(t, remora, env)[0]
	if strings.Join(item.Databases, ",") != "postgres,files" {
		t.Fatalf("databases: %v", item.Databases)
	}
	into := filepath.Join(t.TempDir(), "x")
	remora.Must(t, env, "restore", "--latest", "--database", "files", "--into", into)
	if b, _ := os.ReadFile(filepath.Join(into, strings.TrimPrefix(src, "/"), "postgresql.conf")); string(b) != "shared_buffers = 1GB\n" {
		t.Fatalf("restored file: %q", b)
	}
}
