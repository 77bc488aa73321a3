// Package bench measures Remora against the tools it stands on, in one run on
// one machine, and prints ratios: `make bench`. Sizes are set with
// REMORA_BENCH_MIB (default 1200) and the number of rounds with
// REMORA_BENCH_ROUNDS (default 3). Contenders alternate run by run.
package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// seed fills database db with about mib MiB: half pgbench tables (whose blank
// filler compresses about 100:1) and half rows of realistic, poorly
// compressible data (random words, random bytes) that would otherwise hide
// the cost of compression.
func seed(b *testing.B, pg *testenv.Postgres, db string, mib int) {
	pg.Psql(b, "postgres", "CREATE DATABASE "+db)
	scale := max(1, mib/2/15) // pgbench: about 15 MiB of dump per scale unit
	if out, err := pg.Command("pgbench", "-i", "-q", "-s", strconv.Itoa(scale), db).CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	pg.Psql(b, db, "CREATE TABLE docs (id bigserial PRIMARY KEY, title text, body text, blob bytea)")
	cmd := pg.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", "COPY docs (title, body, blob) FROM STDIN")
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	go func() {
		r := rand.New(rand.NewPCG(1, 2))
		vocab := make([]string, 8000)
		for i := range vocab {
			w := make([]byte, 3+r.IntN(9))
			for j := range w {
				w[j] = byte('a' + r.IntN(26))
			}
			vocab[i] = string(w)
		}
		bw := bufio.NewWriterSize(pw, 1<<20)
		blob := make([]byte, 48)
		var n int
		for n < mib/2<<20 {
			var line strings.Builder
			for i := 0; i < 4; i++ {
				line.WriteString(vocab[r.IntN(len(vocab))] + " ")
			}
			line.WriteByte('\t')
			for i := 0; i < 60; i++ {
				line.WriteString(vocab[r.IntN(len(vocab))] + " ")
			}
			line.WriteString("\t\\\\x")
			for i := range blob {
				blob[i] = byte(r.Uint32())
			}
			line.WriteString(fmt.Sprintf("%x\n", blob))
			n += line.Len()
			bw.WriteString(line.String())
		}
		bw.Flush()
		pw.Close()
	}()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("load docs: %v\n%s", err, out)
	}
	pg.Psql(b, db, "VACUUM ANALYZE")
}

// sample is one timed run: wall time, the peak RSS of the process itself
// (VmHWM, polled while it runs), and the largest peak RSS among it and the
// children it waited for (getrusage).
type sample struct {
	wall      time.Duration
	ownKB     int64
	largestKB int64
}

func measure(b *testing.B, name string, cmd *exec.Cmd) sample {
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	var own int64
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			return sample{wall: time.Since(start), ownKB: own, largestKB: ru.Maxrss}
		case <-tick.C:
			if kb := vmHWM(cmd.Process.Pid); kb > own {
				own = kb
			}
		}
	}
}

// vmHWM reads a process's peak resident set size in KiB.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// rcloneEnv configures rclone's remote "s3:" for the test server, as an
// operator's shell pipeline would upload.
func rcloneEnv(s3 *testenv.S3) []string {
	return []string{"RCLONE_CONFIG_S3_TYPE=s3", "RCLONE_CONFIG_S3_PROVIDER=Other", "RCLONE_CONFIG_S3_ENDPOINT=http://" + s3.Endpoint,
		"RCLONE_CONFIG_S3_ACCESS_KEY_ID=" + s3.AccessKey, "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=" + s3.SecretKey,
		"RCLONE_CONFIG_S3_REGION=" + s3.Region, "RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true"}
}

// stored sums the sizes of the objects below prefix in the bucket.
func stored(b *testing.B, s3 *testenv.S3, bucket, prefix string) int64 {
	var n int64
	for o := range s3.Client(b).ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if strings.HasSuffix(o.Key, ".json") {
			continue
		}
		n += o.Size
	}
	return n
}

// BenchmarkPostgresBackup: remora backup beside pg_dump -Fc -Z0 > /dev/null
// (the limit), the shell pipeline an operator would write (pg_dump | zstd |
// rclone rcat), and the CronJob practice Remora replaces (dump to a file,
// gzip it, upload it), all to the same S3 server.
func BenchmarkPostgresBackup(b *testing.B) {
	mib := envInt("REMORA_BENCH_MIB", 1200)
	rounds := envInt("REMORA_BENCH_ROUNDS", 3)
	pg := testenv.StartPostgres(b)
	s3 := testenv.StartS3(b)
	s3.MakeBucket(b, "bench")
	seed(b, pg, "bench", mib)
	size := pg.Psql(b, "postgres", "SELECT pg_size_pretty(pg_database_size('bench'))")

	dir := b.TempDir()
	remora := filepath.Join(dir, "remora")
	if out, err := exec.Command("go", "build", "-o", remora, "remora.dev/remora/cmd/remora").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	env := append(os.Environ(), s3.Env()...)
	env = append(env, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"), "REMORA_DATABASES=bench",
		"REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=db-0", "REMORA_LOG_LEVEL=warn")
	pgDump := filepath.Join(pg.Bin, "pg_dump")
	pgEnv := append(os.Environ(), "PGHOST="+pg.SocketDir, "PGPORT="+strconv.Itoa(pg.Port), "PGUSER=postgres")
	shell := func(script string, extra ...string) func(int) *exec.Cmd {
		return func(round int) *exec.Cmd {
			c := exec.Command("bash", "-o", "pipefail", "-c", strings.NewReplacer("{round}", strconv.Itoa(round), "{out}", out, "{pg_dump}", pgDump).Replace(script))
			c.Env = append(append(pgEnv, extra...), rcloneEnv(s3)...)
			return c
		}
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	ageKey := id.Recipient().String()

	type contender struct {
		name   string
		cmd    func(round int) *exec.Cmd
		prefix string // where it stores, for the stored size
		need   string // a tool it needs
	}
	contenders := []contender{
		{name: "pg_dump -Fc -Z0 > /dev/null (limit)", cmd: func(int) *exec.Cmd {
			c := pg.Command("pg_dump", "-Fc", "-Z0", "-d", "bench")
			c.Path = pgDump
			return c
		}},
		{name: "remora backup -> S3 (zstd)", prefix: "r/", cmd: func(int) *exec.Cmd {
			c := exec.Command(remora, "backup", "--storage", s3.URL("bench", "r"))
			c.Env = env
			return c
		}},
		{name: "remora backup -> S3 (zstd, age)", prefix: "age/", cmd: func(int) *exec.Cmd {
			c := exec.Command(remora, "backup", "--storage", s3.URL("bench", "age"), "--encrypt-to", ageKey)
			c.Env = env
			return c
		}},
		{name: "pg_dump | zstd -3 | rclone rcat (pipeline)", prefix: "pipe/", need: "rclone",
			cmd: shell("{pg_dump} -Fc -Z0 -d bench | zstd -q -3 | rclone rcat s3:bench/pipe/{round}.dump.zst")},
		{name: "pg_dump > file; gzip; rclone copy (CronJob)", prefix: "cron/", need: "rclone",
			cmd: shell("{pg_dump} -Fc -Z0 -d bench -f {out}/cron.dump && gzip -6 -f {out}/cron.dump && rclone copyto {out}/cron.dump.gz s3:bench/cron/{round}.dump.gz && rm -f {out}/cron.dump.gz")},
		{name: "remora backup -> file:// (zstd)", cmd: func(int) *exec.Cmd {
			c := exec.Command(remora, "backup", "--storage", "file://"+out)
			c.Env = env
			return c
		}},
	}
	contenders = slices.DeleteFunc(contenders, func(c contender) bool {
		if c.need == "" {
			return false
		}
		if _, err := exec.LookPath(c.need); err != nil {
			fmt.Printf("skipping %q: %s is not installed\n", c.name, c.need)
			return true
		}
		return false
	})

	walls := make([][]time.Duration, len(contenders))
	own := make([]int64, len(contenders))
	largest := make([]int64, len(contenders))
	b.ResetTimer()
	for round := 0; round < rounds; round++ {
		for i, c := range contenders {
			cmd := c.cmd(round)
			if cmd.Stdout == nil {
				cmd.Stdout = io.Discard
			}
			s := measure(b, c.name, cmd)
			walls[i] = append(walls[i], s.wall)
			own[i] = max(own[i], s.ownKB)
			largest[i] = max(largest[i], s.largestKB)
			time.Sleep(1100 * time.Millisecond) // distinct backup IDs
		}
	}
	b.StopTimer()
	limit := median(walls[0])
	fmt.Printf("\nPostgreSQL backup: database of %s (%d MiB requested), %d rounds, median wall time\n", size, mib, rounds)
	fmt.Printf("%-46s %10s %8s %18s %22s %14s\n", "contender", "wall", "ratio", "peak RSS (itself)", "peak RSS (any child)", "stored/round")
	for i, c := range contenders {
		st := ""
		if c.prefix != "" {
			st = fmt.Sprintf("%.1f MiB", float64(stored(b, s3, "bench", c.prefix))/float64(rounds)/(1<<20))
		}
		fmt.Printf("%-46s %10s %7.2fx %14.1f MiB %18.1f MiB %14s\n", c.name, median(walls[i]).Round(10*time.Millisecond),
			float64(median(walls[i]))/float64(limit), float64(own[i])/1024, float64(largest[i])/1024, st)
	}
}
