package bench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"filippo.io/age"

	"remora.dev/remora/internal/testenv"
)

// seedPostgres fills database db with about mib MiB: half pgbench tables
// (whose blank filler compresses about 100:1) and half rows of realistic,
// poorly compressible data that would otherwise hide the cost of compression.
func seedPostgres(b *testing.B, pg *testenv.Postgres, db string, mib int) {
	b.Helper()
	pg.Psql(b, "postgres", "CREATE DATABASE "+db)
	scale := max(1, mib/2/15) // pgbench: about 15 MiB of dump per scale unit
	if out, err := pg.Command("pgbench", "-i", "-q", "-s", strconv.Itoa(scale), db).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	pg.Psql(b, db, "CREATE TABLE docs (id bigserial PRIMARY KEY, title text, body text, blob bytea)")
	cmd := pg.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", "COPY docs (title, body, blob) FROM STDIN")
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	go func() { pw.CloseWithError(writeDocs(pw, mib/2<<20, `\\x`)) }()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("load docs: %v\n%s", err, out)
	}
	pg.Psql(b, db, "VACUUM ANALYZE")
}

// BenchmarkPostgres: remora backup beside pg_dump -Fc -Z0 > /dev/null (the
// limit), the shell pipeline an operator would write (pg_dump | zstd |
// rclone rcat), and the CronJob practice Remora replaces (dump to a file,
// gzip it, upload it), all to the same S3 server; then remora restore from
// S3 beside pg_restore from a local file; then Remora's peak memory on a
// database a quarter of the size.
func BenchmarkPostgres(b *testing.B) {
	mib, n := sizeMiB(), rounds()
	pg := testenv.StartPostgres(b)
	s3 := testenv.StartS3(b)
	s3.MakeBucket(b, "bench")
	seedPostgres(b, pg, "bench", mib)
	seedPostgres(b, pg, "small", mib/4)
	size := pg.Psql(b, "postgres", "SELECT pg_size_pretty(pg_database_size('bench'))")
	smallSize := pg.Psql(b, "postgres", "SELECT pg_size_pretty(pg_database_size('small'))")

	remora := remoraBinary(b)
	out := b.TempDir()
	env := append(baseEnv(), s3.Env()...)
	env = append(env, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"), "REMORA_DATABASES=bench",
		"REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=db-0", "REMORA_LOG_LEVEL=warn")
	remoraCmd := func(args ...string) *exec.Cmd {
		c := exec.Command(remora, args...)
		c.Env = env
		return c
	}
	pgDump := filepath.Join(pg.Bin, "pg_dump")
	shellEnv := append(append(baseEnv(), "PGHOST="+pg.SocketDir, "PGPORT="+strconv.Itoa(pg.Port), "PGUSER=postgres"), rcloneEnv(s3)...)
	vars := map[string]string{"out": out, "pg_dump": pgDump, "pg_restore": filepath.Join(pg.Bin, "pg_restore")}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	backups := race(b, fmt.Sprintf("PostgreSQL backup, database of %s", size), n, s3, "bench", []contender{
		{name: "`pg_dump -Fc -Z0 > /dev/null` (limit)", cmd: shell(shellEnv, "{pg_dump} -Fc -Z0 -d bench > /dev/null", vars)},
		{name: "`remora backup` → S3 (zstd)", prefix: "r/", cmd: func(int) *exec.Cmd {
			return remoraCmd("backup", "--storage", s3.URL("bench", "r"))
		}},
		{name: "`remora backup` → S3 (zstd, age)", prefix: "age/", cmd: func(int) *exec.Cmd {
			return remoraCmd("backup", "--storage", s3.URL("bench", "age"), "--encrypt-to", id.Recipient().String())
		}},
		{name: "`remora backup` → `file://` (zstd)", cmd: func(int) *exec.Cmd {
			return remoraCmd("backup", "--storage", "file://"+out)
		}},
		{name: "`pg_dump \\| zstd -3 \\| rclone rcat` (pipeline)", prefix: "pipe/", need: "rclone",
			cmd: shell(shellEnv, "{pg_dump} -Fc -Z0 -d bench | zstd -q -3 | rclone rcat s3:bench/pipe/{round}.dump.zst", vars)},
		{name: "`pg_dump -f`; `gzip`; `rclone copy` (CronJob)", prefix: "cron/", need: "rclone",
			cmd: shell(shellEnv, "{pg_dump} -Fc -Z0 -d bench -f {out}/cron.dump && gzip -6 -f {out}/cron.dump && "+
				"rclone copyto {out}/cron.dump.gz s3:bench/cron/{round}.dump.gz && rm -f {out}/cron.dump.gz", vars)},
	})

	// Restore: both into a new database, dropped before each run.
	if err := shell(shellEnv, "{pg_dump} -Fc -Z0 -d bench -f {out}/bench.dump", vars)(0).Run(); err != nil {
		b.Fatalf("pg_dump: %v", err)
	}
	drop := func(int) { pg.Psql(b, "postgres", "DROP DATABASE IF EXISTS restored") }
	restores := race(b, fmt.Sprintf("PostgreSQL restore, database of %s", size), n, s3, "bench", []contender{
		{name: "`pg_restore` from a local file (limit)", before: func(r int) {
			drop(r)
			pg.Psql(b, "postgres", "CREATE DATABASE restored")
		}, cmd: shell(shellEnv, "{pg_restore} --exit-on-error -d restored {out}/bench.dump", vars)},
		{name: "`remora restore` from S3", before: drop, cmd: func(int) *exec.Cmd {
			return remoraCmd("restore", "--storage", s3.URL("bench", "r"), "--latest", "--database", "bench", "--into", "restored", "--no-globals")
		}},
	})
	os.Remove(filepath.Join(out, "bench.dump"))

	// Memory against size: the same backup and restore of a smaller database.
	env = append(env, "REMORA_DATABASES=small")
	small := race(b, fmt.Sprintf("PostgreSQL, database of %s", smallSize), 1, s3, "bench", []contender{
		{name: "`remora backup` → S3 (zstd)", prefix: "small/", cmd: func(int) *exec.Cmd {
			return remoraCmd("backup", "--storage", s3.URL("bench", "small"))
		}},
		{name: "`remora restore` from S3", before: drop, cmd: func(int) *exec.Cmd {
			return remoraCmd("restore", "--storage", s3.URL("bench", "small"), "--latest", "--database", "small", "--into", "restored", "--no-globals")
		}},
	})
	b.StopTimer()
	fmt.Printf("\nRemora's peak RSS against database size\n| | %s | %s |\n|---|---:|---:|\n", smallSize, size)
	fmt.Printf("| `remora backup` → S3 | %.1f MiB | %.1f MiB |\n", float64(small[0].ownKB)/1024, float64(backups[1].ownKB)/1024)
	fmt.Printf("| `remora restore` from S3 | %.1f MiB | %.1f MiB |\n", float64(small[1].ownKB)/1024, float64(restores[1].ownKB)/1024)
	gz := backups[len(backups)-1].stored
	if gz > 0 {
		fmt.Printf("\nStored size against gzip -6 of the same dump: remora (zstd) %.2f×, pipeline (zstd -3) %.2f×\n",
			float64(backups[1].stored)/float64(gz), float64(backups[4].stored)/float64(gz))
	}
}
