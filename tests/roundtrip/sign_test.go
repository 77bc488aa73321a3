package roundtrip

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestBucketWriterCannotForge: someone who can write to the storage but does
// not hold the signing key replaces a signed backup's dump with their own
// (checksum and size fixed in the manifest, the old signature kept). With the
// verify key, list marks the backup, and verify and restore refuse it with
// exit 3, naming it; nothing of the forged dump reaches the database. A
// backup made before signing was set up is refused too, unless
// --allow-unsigned is given.
func TestBucketWriterCannotForge(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	testenv.SeedOdd(t, pg, "odd")
	want := testenv.Checksums(t, pg, "odd")
	pg.Psql(t, "postgres", "CREATE DATABASE evil")
	pg.Psql(t, "evil", "CREATE TABLE pwned (x int)")

	keys := t.TempDir()
	res := remora.Must(t, nil, "keygen", "--out", filepath.Join(keys, "signing.pem"))
	if !strings.Contains(res.Stdout, "signing.pem.pub") {
		t.Fatalf("keygen: %s", res)
	}
	if r := remora.Run(t, nil, "keygen", "--out", filepath.Join(keys, "signing.pem")); r.Code != exitUsage {
		t.Fatalf("keygen over an existing key: %s", r)
	}
	signing := []string{"REMORA_SIGNING_KEY_FILE=" + filepath.Join(keys, "signing.pem")}
	verifying := []string{"REMORA_VERIFY_KEY_FILE=" + filepath.Join(keys, "signing.pem.pub")}

	dir := t.TempDir()
	env := testenv.PgEnv(pg, "file://"+dir, "REMORA_DATABASES=odd")
	remora.Must(t, env, "backup")
	remora.Must(t, append(env, signing...), "backup")
	items := clitest.List(t, remora, append(env, verifying...))
	if len(items) != 2 || items[0].Signed || !strings.Contains(items[0].Problem, "not signed") || !items[1].Signed {
		t.Fatalf("list with the verify key: %+v", items)
	}
	old, signed := items[0].ID, items[1].ID

	// The attacker's dump, taken with their own remora.
	evilDir := t.TempDir()
	remora.Must(t, testenv.PgEnv(pg, "file://"+evilDir, "REMORA_DATABASES=evil"), "backup")
	evilItem := clitest.List(t, remora, testenv.PgEnv(pg, "file://"+evilDir))[0]
	evil, err := os.ReadFile(filepath.Join(evilDir, "shop/db-0/postgres", evilItem.ID, "databases/evil.dump.zst"))
	if err != nil {
		t.Fatal(err)
	}
	bdir := filepath.Join(dir, "shop/db-0/postgres", signed)
	if err := os.WriteFile(filepath.Join(bdir, "databases/odd.dump.zst"), evil, 0o644); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	b, _ := os.ReadFile(filepath.Join(bdir, "manifest.json"))
	json.Unmarshal(b, &doc)
	sum := sha256.Sum256(evil)
	for _, o := range doc["objects"].([]any) {
		if o := o.(map[string]any); o["key"] == "databases/odd.dump.zst" {
			o["sha256"], o["size"], o["raw_size"] = hex.EncodeToString(sum[:]), len(evil), evilItem.Manifest.Objects[len(evilItem.Manifest.Objects)-1].RawSize
		}
	}
	b, _ = json.MarshalIndent(doc, "", "  ")
	os.WriteFile(filepath.Join(bdir, "manifest.json"), b, 0o644)

	// Without a key nothing can tell (the storage is trusted): the attack
	// passes verify.
	if r := remora.Run(t, env, "verify", signed); r.Code != 0 || !strings.Contains(r.Stderr, "signatures were not checked") {
		t.Fatalf("verify without a key: %s", r)
	}
	for _, keyEnv := range [][]string{verifying, signing} {
		if r := remora.Run(t, append(env, keyEnv...), "verify", signed); r.Code != exitCorrupt || !strings.Contains(r.Stderr, signed+" cannot be used") {
			t.Fatalf("verify of the forged backup: %s", r)
		}
		if r := remora.Run(t, append(env, keyEnv...), "verify", "--all"); r.Code != exitCorrupt || !strings.Contains(r.Stdout, signed+"  UNTRUSTED") {
			t.Fatalf("verify --all: %s", r)
		}
		r := remora.Run(t, append(env, keyEnv...), "restore", signed, "--database", "odd", "--into", "forged", "--allow-unsigned")
		if r.Code != exitCorrupt || !strings.Contains(r.Stderr, signed) || !strings.Contains(r.Stderr, "altered after signing") {
			t.Fatalf("restore of the forged backup: %s", r)
		}
	}
	if n := pg.Psql(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'forged'"); n != "0" {
		t.Fatal("a refused restore created the database")
	}

	// The backup from before signing: refused, then accepted when asked.
	r := remora.Run(t, append(env, verifying...), "restore", old, "--database", "odd", "--into", "old")
	if r.Code != exitCorrupt || !strings.Contains(r.Stderr, "--allow-unsigned") {
		t.Fatalf("restore of an unsigned backup: %s", r)
	}
	remora.Must(t, append(env, verifying...), "restore", old, "--database", "odd", "--into", "old", "--allow-unsigned")
	testenv.SameChecksums(t, "unsigned backup restored with --allow-unsigned", want, testenv.Checksums(t, pg, "old"))
}
