package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"remora.dev/remora/drill"
	"remora.dev/remora/drivers"
	_ "remora.dev/remora/drivers/mysql"
	_ "remora.dev/remora/drivers/postgres"
	_ "remora.dev/remora/drivers/redis"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/file"
)

// BenchmarkDrill: a restore drill of a backup of each of the databases the
// other benchmarks seed (PostgreSQL logical and physical, MariaDB, Redis):
// its time and the peak memory of the throwaway server and the restore
// tools, as the drill measures them (the sum of their Pss).
func BenchmarkDrill(b *testing.B) {
	mib := sizeMiB()
	pg := testenv.StartPostgres(b)
	seedPostgres(b, pg, "bench", mib)
	mdb := testenv.StartMariaDB(b)
	seedMariaDB(b, mdb, "bench", mib/2)
	rd := testenv.StartRedis(b)
	seedRedis(b, rd, mib/2)
	cases := []struct {
		name, driver string
		cfg          drivers.Config
	}{
		{"PostgreSQL logical", "postgres", drivers.Config{DSN: pg.DSN("postgres"), Databases: []string{"bench"}}},
		{"PostgreSQL physical", "postgres", drivers.Config{DSN: pg.DSN("postgres"), Method: drivers.MethodPhysical}},
		{"MariaDB", "mysql", drivers.Config{DSN: mdb.DSN(), Databases: []string{"bench"}}},
		{"Redis", "redis", drivers.Config{DSN: rd.DSN()}},
	}
	b.ResetTimer()
	fmt.Printf("\n## Restore drill (REMORA_BENCH_MIB=%d)\n\n| backup | size stored | drill | peak memory (server and tools) | checks |\n|---|---:|---:|---:|---:|\n", mib)
	for _, c := range cases {
		st, e := benchBackup(b, c.driver, c.cfg)
		tmp := b.TempDir()
		os.Chmod(tmp, 0o755) // a server run as another user (as root: postgres) enters it
		os.Chmod(filepath.Dir(tmp), 0o755)
		start := time.Now()
		d, err := drill.Run(context.Background(), st, e, drill.Options{TempDir: tmp, User: "postgres"})
		if err != nil || !d.OK {
			b.Fatalf("%s: drill: %v %v", c.name, err, d.Problems)
		}
		fmt.Printf("| %s | %.0f MiB | %.1f s | %.0f MiB | %d |\n", c.name, float64(e.Manifest.Size())/(1<<20),
			time.Since(start).Seconds(), float64(d.PeakRSSBytes)/(1<<20), len(d.Checks))
	}
}

func benchBackup(b *testing.B, driver string, cfg drivers.Config) (storage.Storage, *repo.Entry) {
	b.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, "file://"+b.TempDir(), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	drv, err := drivers.New(driver, cfg)
	if err != nil {
		b.Fatal(err)
	}
	scope := repo.Scope{Namespace: "bench", Workload: "db-0", Driver: driver, Method: cfg.Method}
	if _, err := repo.Backup(ctx, repo.BackupOptions{Scope: scope, Driver: drv, Destinations: []repo.Destination{{Storage: st}}}); err != nil {
		b.Fatal(err)
	}
	entries, err := repo.List(ctx, st, scope, repo.Trust{})
	if err != nil {
		b.Fatal(err)
	}
	e, err := repo.Select(entries, repo.Selector{Latest: true})
	if err != nil {
		b.Fatal(err)
	}
	return st, e
}
