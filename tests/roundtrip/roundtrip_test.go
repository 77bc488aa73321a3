package roundtrip

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestRoundTrip backs up a pgbench database, a database of odd types and one
// with an awkward name, to S3 and to a local directory, then restores each
// under a new name and compares every table.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")

	pg.Psql(t, "postgres", "CREATE DATABASE bench")
	if out, err := pg.Command("pgbench", "-i", "-s", "10", "-q", "bench").CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	testenv.SeedOdd(t, pg, "odd")
	testenv.SeedOdd(t, pg, "we/ird db")
	want := map[string]map[string]string{}
	for _, db := range []string{"bench", "odd", "we/ird db"} {
		want[db] = testenv.Checksums(t, pg, db)
	}

	for _, tc := range []struct {
		name, storage string
		env           []string
	}{
		{"s3", s3.URL("backups", "remora"), s3.Env()},
		{"file", "file://" + t.TempDir(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(tc.env, "REMORA_STORAGE="+tc.storage, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0")
			r := remora.Must(t, env, "backup")
			if !strings.Contains(r.Stdout, "complete") {
				t.Fatalf("backup said: %s", r)
			}
			items := clitest.List(t, remora, env)
			if len(items) != 1 {
				t.Fatalf("list shows %d backups, want 1", len(items))
			}
			b := items[0]
			if got := strings.Join(b.Databases, ","); got != "bench,odd,postgres,we/ird db" {
				t.Errorf("databases = %s", got)
			}
			if b.Verified || b.Manifest == nil || len(b.Manifest.Objects) != 5 || b.Manifest.ServerVersion == "" || b.Manifest.Tools["pg_dump"] == "" {
				t.Errorf("list item: %+v", b)
			}
			remora.Must(t, env, "verify")
			if items := clitest.List(t, remora, env); !items[0].Verified {
				t.Errorf("not verified after verify: %+v", items[0])
			}
			if r := remora.Must(t, env, "list"); !strings.Contains(r.Stdout, b.ID) || !strings.Contains(r.Stdout, "yes") {
				t.Errorf("list table:\n%s", r.Stdout)
			}

			restores := map[string]string{"bench": "bench_" + tc.name, "odd": "odd_" + tc.name, "we/ird db": "weird_" + tc.name}
			for _, db := range slices.Sorted(func(yield func(string) bool) {
				for k := range restores {
					if !yield(k) {
						return
					}
				}
			}) {
				remora.Must(t, env, "restore", b.ID, "--database", db, "--into", restores[db])
				testenv.SameChecksums(t, db+" -> "+restores[db], want[db], testenv.Checksums(t, pg, restores[db]))
			}
			for _, db := range restores {
				pg.Psql(t, "postgres", "DROP DATABASE "+testenv.QuoteIdent(db))
			}
			if dir, ok := strings.CutPrefix(tc.storage, "file://"); ok {
				// Nothing stored holds the password in the clear.
				filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
					if err == nil && !d.IsDir() {
						b, _ := os.ReadFile(p)
						if strings.HasSuffix(p, ".zst") {
							dec, _ := zstd.NewReader(nil)
							b, err = dec.DecodeAll(b, nil)
							if err != nil {
								t.Errorf("%s: %v", p, err)
							}
						}
						testenv.NoCanary(t, p, string(b))
					}
					return nil
				})
			}
		})
	}
}
