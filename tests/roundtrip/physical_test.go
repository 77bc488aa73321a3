package roundtrip

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestPhysicalRoundTrip: a physical backup (with a tablespace) beside a
// logical one, both listed with their method; restore --data-dir fills a new
// directory on which a second server starts with the same rows; a second
// restore into it is refused; verify passes, then fails naming the file
// after a byte inside the stored tar changed (its checksums fixed in the
// manifest, as someone who can write to the storage could).
func TestPhysicalRoundTrip(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	ts := pg.ServerDir(t)
	pg.Psql(t, "postgres", "CREATE TABLESPACE spaced LOCATION '"+ts+"'")
	testenv.SeedOdd(t, pg, "app")
	pg.Psql(t, "app", "CREATE TABLE far (id int PRIMARY KEY, v text) TABLESPACE spaced; INSERT INTO far SELECT i, md5(i::text) FROM generate_series(1, 3000) i")
	oid := pg.Psql(t, "postgres", "SELECT oid FROM pg_tablespace WHERE spcname = 'spaced'")
	want := testenv.Checksums(t, pg, "app")

	store := t.TempDir()
	env := testenv.PgEnv(pg, "file://"+store)
	remora.Must(t, append(env, "REMORA_METHOD=physical"), "backup")
	remora.Must(t, env, "backup")
	items := clitest.List(t, remora, env)
	if len(items) != 2 || items[0].Method != "physical" || items[1].Method != "logical" {
		t.Fatalf("list: %+v", items)
	}
	phys := items[0]
	if out := remora.Must(t, env, "list").Stdout; !strings.Contains(out, "METHOD") || !strings.Contains(out, "physical") {
		t.Errorf("list shows no method:\n%s", out)
	}
	if r := remora.Must(t, env, "verify", "--method", "physical"); !strings.Contains(r.Stdout, phys.ID+"  OK") {
		t.Fatalf("verify: %s", r)
	}

	dir := filepath.Join(t.TempDir(), "pgdata")
	moved := pg.ServerDir(t)
	remora.Must(t, env, "restore", "--latest", "--data-dir", dir, "--tablespace-map", oid+"="+moved)
	pg2 := testenv.StartPostgresOn(t, dir)
	testenv.SameChecksums(t, "restored data directory", want, testenv.Checksums(t, pg2, "app"))

	r := remora.Run(t, env, "restore", "--latest", "--data-dir", dir, "--tablespace-map", oid+"="+t.TempDir())
	if r.Code == 0 || !strings.Contains(lastLine(r.Stderr), "is not empty: a restore never touches an existing data directory") {
		t.Errorf("restore into a used data directory: %s", r)
	}
	if r := remora.Run(t, env, "restore", "--latest", "--data-dir", t.TempDir(), "--into", "x"); r.Code != exitUsage {
		t.Errorf("--data-dir with --into: %s", r)
	}

	name := tamper(t, filepath.Join(store, "shop/db-0/postgres/physical", phys.ID))
	r = remora.Run(t, env, "verify", "--method", "physical")
	if r.Code != exitCorrupt || !strings.Contains(r.Stdout, name) {
		t.Fatalf("verify of a tampered base backup (%s): %s", name, r)
	}
}

// tamper changes one byte of the first data file in the base backup of
// dir, fixes the object's checksum and size in the manifest, and returns
// the file's name.
func tamper(t *testing.T, dir string) string {
	t.Helper()
	key := filepath.Join(dir, "base.tar.zst")
	stored, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	zr, _ := zstd.NewReader(bytes.NewReader(stored))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(zr)
	name := ""
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if name == "" && strings.HasPrefix(hdr.Name, "base/") && hdr.Typeflag == tar.TypeReg && len(data) > 100 {
			name, data[len(data)/2] = hdr.Name, data[len(data)/2]^0xff
		}
		tw.WriteHeader(hdr)
		tw.Write(data)
	}
	tw.Close()
	zw, _ := zstd.NewWriter(nil)
	forged := zw.EncodeAll(out.Bytes(), nil)
	os.WriteFile(key, forged, 0o644)

	var doc map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	json.Unmarshal(b, &doc)
	sum := sha256.Sum256(forged)
	o := doc["objects"].([]any)[0].(map[string]any)
	o["sha256"], o["size"], o["raw_size"] = hex.EncodeToString(sum[:]), len(forged), out.Len()
	b, _ = json.MarshalIndent(doc, "", "  ")
	os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644)
	if name == "" {
		t.Fatal("no data file to tamper with")
	}
	return name
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
