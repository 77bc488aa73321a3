package roundtrip

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestEncryptedBackup: with --encrypt-to the stored bytes are unreadable
// without the identity; verify passes without it; restore needs it and then
// gives identical data; and age -d | zstd -d | pg_restore does the same.
func TestEncryptedBackup(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	testenv.SeedOdd(t, pg, "odd")
	const marker = "plaintext-marker-7d1f"
	pg.Psql(t, "odd", "CREATE TABLE notes (s text); INSERT INTO notes SELECT '"+marker+"' FROM generate_series(1, 100)")
	want := testenv.Checksums(t, pg, "odd")

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := age.GenerateX25519Identity()
	keyDir := t.TempDir()
	keyFile := filepath.Join(keyDir, "key.txt")
	otherFile := filepath.Join(keyDir, "other.txt")
	os.WriteFile(keyFile, []byte("# created: test\n"+id.String()+"\n"), 0o600)
	os.WriteFile(otherFile, []byte(other.String()+"\n"), 0o600)

	dir := t.TempDir()
	for _, tc := range []struct {
		name, storage string
		env           []string
	}{
		{"s3", s3.URL("backups", "enc"), s3.Env()},
		{"file", "file://" + dir, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(tc.env, "REMORA_STORAGE="+tc.storage, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=odd", "AGE_RECIPIENTS="+id.Recipient().String())
			remora.Must(t, env, "backup")
			item := clitest.List(t, remora, env)[0]
			if item.Manifest.Encryption == nil || item.Manifest.Encryption.Recipients[0] != id.Recipient().String() {
				t.Fatalf("manifest encryption: %+v", item.Manifest.Encryption)
			}
			for _, o := range item.Manifest.Objects {
				if !strings.HasSuffix(o.Key, ".zst.age") {
					t.Errorf("object %s is not named as encrypted", o.Key)
				}
			}
			if r := remora.Must(t, env, "verify"); !strings.Contains(r.Stdout, "checksums only") {
				t.Errorf("verify without identity: %s", r)
			}
			remora.Must(t, env, "verify", "--identity", keyFile)

			r := remora.Run(t, env, "restore", "--latest", "--database", "odd", "--into", "nokey")
			if r.Code == 0 || !strings.Contains(r.Stderr, "--identity") {
				t.Fatalf("restore without identity: %s", r)
			}
			r = remora.Run(t, env, "restore", "--latest", "--database", "odd", "--into", "wrongkey", "--identity", otherFile)
			if r.Code == 0 || !strings.Contains(r.Stderr, "no identity in") {
				t.Fatalf("restore with the wrong identity: %s", r)
			}
			for _, db := range []string{"nokey", "wrongkey"} {
				if n := pg.Psql(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+db+"'"); n != "0" {
					t.Errorf("a refused restore created %s", db)
				}
			}
			remora.Must(t, append(env, "AGE_IDENTITY_FILE="+keyFile), "restore", "--latest", "--database", "odd", "--into", "odd_"+tc.name)
			testenv.SameChecksums(t, "encrypted round trip", want, testenv.Checksums(t, pg, "odd_"+tc.name))
		})
	}

	// The stored bytes hold no plaintext.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".age") {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte("PGDMP")) {
				t.Errorf("%s holds plaintext", p)
			}
		}
		return nil
	})

	// Standard tools: age -d | zstd -d | pg_restore.
	ageBin, err1 := exec.LookPath("age")
	zstd, err2 := exec.LookPath("zstd")
	if err1 != nil || err2 != nil {
		testenv.Missing(t, "age and zstd", "apt-get install age zstd")
	}
	env := []string{"REMORA_STORAGE=file://" + dir, "REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0"}
	bdir := filepath.Join(dir, "shop/db-0/postgres", clitest.List(t, remora, env)[0].ID)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c",
		`createdb odd_tools && "$AGE" -d -i "$KEY" databases/odd.dump.zst.age | "$ZSTD" -dc | pg_restore --exit-on-error -d odd_tools`)
	cmd.Dir = bdir
	cmd.Env = append(os.Environ(), "PATH="+pg.Bin+":"+os.Getenv("PATH"), "AGE="+ageBin, "ZSTD="+zstd, "KEY="+keyFile,
		"PGHOST="+pg.SocketDir, "PGPORT="+strconv.Itoa(pg.Port), "PGUSER=postgres")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("age -d | zstd -d | pg_restore: %v\n%s", err, out)
	}
	testenv.SameChecksums(t, "age -d | zstd -d | pg_restore", want, testenv.Checksums(t, pg, "odd_tools"))
}

// TestGzip: --compression gzip round-trips and gzip -d | pg_restore reads it.
func TestGzip(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	testenv.SeedOdd(t, pg, "odd")
	want := testenv.Checksums(t, pg, "odd")
	dir := t.TempDir()
	env := testenv.PgEnv(pg, "file://"+dir, "REMORA_DATABASES=odd", "REMORA_COMPRESSION=gzip")
	remora.Must(t, env, "backup")
	remora.Must(t, env, "verify")
	remora.Must(t, env, "restore", "--latest", "--into", "odd_gz")
	testenv.SameChecksums(t, "gzip round trip", want, testenv.Checksums(t, pg, "odd_gz"))

	bdir := filepath.Join(dir, "shop/db-0/postgres", clitest.List(t, remora, env)[0].ID)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", `createdb odd_gunzip && gzip -dc databases/odd.dump.gz | pg_restore --exit-on-error -d odd_gunzip`)
	cmd.Dir = bdir
	cmd.Env = append(os.Environ(), "PATH="+pg.Bin+":"+os.Getenv("PATH"), "PGHOST="+pg.SocketDir, "PGPORT="+strconv.Itoa(pg.Port), "PGUSER=postgres")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gzip -d | pg_restore: %v\n%s", err, out)
	}
	testenv.SameChecksums(t, "gzip -d | pg_restore", want, testenv.Checksums(t, pg, "odd_gunzip"))
}
