package bench

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
)

// A load's outcome over one phase: transactions per second and the 99th
// percentile of their latency.
type loadResult struct {
	tps   float64
	p99ms float64
}

// impactPhase is one phase: the load alone, or beside back-to-back backups.
type impactPhase struct {
	name    string
	args    []string // of remora backup; nil: no backup
	load    loadResult
	backups []time.Duration
}

// BenchmarkImpact: what a backup costs the database it protects. A write
// load runs four times for the same duration: alone; beside `remora backup`
// run back to back at the default priority (low); beside the same backup at
// normal priority; and at low priority capped at 20 MiB/s (--max-rate).
// Each phase reports the load's TPS and p99 latency, and the backups'
// median wall time, so that the cost of being gentle shows as well as its
// benefit. REMORA_BENCH_IMPACT_SECONDS (20) is each phase's length,
// REMORA_BENCH_IMPACT_SCALE (30) pgbench's scale, and
// REMORA_BENCH_IMPACT_MIB (200) the MariaDB data.
func BenchmarkImpact(b *testing.B) {
	d := time.Duration(envInt("REMORA_BENCH_IMPACT_SECONDS", 20)) * time.Second
	s3 := testenv.StartS3(b)
	s3.MakeBucket(b, "bench")
	remora := remoraBinary(b)
	b.ResetTimer()
	impactPostgres(b, s3, remora, d)
	impactMariaDB(b, s3, remora, d)
}

func impactPhases() []*impactPhase {
	return []*impactPhase{
		{name: "undisturbed"},
		{name: "during `remora backup` (default: `--priority low`)", args: []string{"--priority", "low"}},
		{name: "during `remora backup --priority normal`", args: []string{"--priority", "normal"}},
		{name: "during `remora backup --max-rate 20Mi` (low)", args: []string{"--priority", "low", "--max-rate", "20Mi"}},
		// The phases run one after the other on a database that grows:
		// the load alone again shows how far it drifted meanwhile.
		{name: "undisturbed, again"},
	}
}

func impactPostgres(b *testing.B, s3 *testenv.S3, remora string, d time.Duration) {
	pg := testenv.StartPostgres(b)
	pg.Psql(b, "postgres", "CREATE DATABASE bench")
	scale := envInt("REMORA_BENCH_IMPACT_SCALE", 30)
	if out, err := pg.Command("pgbench", "-i", "-q", "-s", strconv.Itoa(scale), "bench").CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	size := pg.Psql(b, "postgres", "SELECT pg_size_pretty(pg_database_size('bench'))")
	env := append(baseEnv(), s3.Env()...)
	env = append(env, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"), "REMORA_DATABASES=bench",
		"REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=pg-0", "REMORA_LOG_LEVEL=warn")
	load := func() loadResult { return pgbenchLoad(b, pg, d) }
	phases := runImpact(b, remora, env, s3.URL("bench", "pg"), load, impactPhases())
	printImpact(fmt.Sprintf("PostgreSQL: pgbench -c 4 -j 2 -T %d (TPC-B-like), scale %d, database of %s", int(d.Seconds()), scale, size),
		pg.Data, phases)
}

func impactMariaDB(b *testing.B, s3 *testenv.S3, remora string, d time.Duration) {
	m := testenv.StartMariaDB(b)
	mib := envInt("REMORA_BENCH_IMPACT_MIB", 200)
	seedMariaDB(b, m, "bench", mib)
	size := m.SQL(b, "SELECT CONCAT(ROUND(SUM(data_length + index_length) / 1048576), ' MiB') FROM information_schema.tables WHERE table_schema = 'bench'")
	rows, _ := strconv.Atoi(m.SQL(b, "SELECT COUNT(*) FROM bench.accounts"))
	env := append(baseEnv(), s3.Env()...)
	env = append(env, "REMORA_DRIVER=mysql", "REMORA_DSN="+m.DSN(), "REMORA_DATABASES=bench",
		"REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=maria-0", "REMORA_LOG_LEVEL=warn")
	load := func() loadResult { return mariadbLoad(b, m, rows, d) }
	phases := runImpact(b, remora, env, s3.URL("bench", "maria"), load, impactPhases())
	printImpact(fmt.Sprintf("MariaDB: 4 clients, each a persistent `mariadb` connection running UPDATE+INSERT transactions for %ds, database of %s",
		int(d.Seconds()), size), m.Dir, phases)
}

// runImpact runs each phase: the load, and beside it (if the phase has
// one) remora backup again and again until the load ends.
func runImpact(b *testing.B, remora string, env []string, url string, load func() loadResult, phases []*impactPhase) []*impactPhase {
	for _, p := range phases {
		done := make(chan loadResult)
		go func() { done <- load() }()
		if p.args == nil {
			p.load = <-done
			continue
		}
		for running := true; running; {
			start := time.Now()
			cmd := exec.Command(remora, append([]string{"backup", "--storage", url}, p.args...)...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("remora backup: %v\n%s", err, out)
			}
			p.backups = append(p.backups, time.Since(start))
			select {
			case p.load = <-done:
				running = false
			default:
			}
		}
	}
	return phases
}

// pgbenchLoad runs pgbench's TPC-B-like script for d and reads every
// transaction's latency from its log.
func pgbenchLoad(b *testing.B, pg *testenv.Postgres, d time.Duration) loadResult {
	dir := b.TempDir()
	os.Chmod(dir, 0o777) // pgbench may run as the server's user
	// Without -n: each phase starts from vacuumed tables and an empty
	// history, not from the dead rows the phases before it left.
	cmd := pg.Command("pgbench", "-c", "4", "-j", "2", "-T", strconv.Itoa(int(d.Seconds())), "-l", "--log-prefix="+filepath.Join(dir, "pgb"), "bench")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "pgb*"))
	var lat []float64
	for _, f := range logs {
		body, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(string(body)) {
			// client_id transaction_no time script_no time_epoch time_us
			if f := strings.Fields(line); len(f) >= 3 {
				if us, err := strconv.ParseFloat(f[2], 64); err == nil {
					lat = append(lat, us/1000)
				}
			}
		}
	}
	return summarize(lat, d)
}

func summarize(lat []float64, d time.Duration) loadResult {
	slices.Sort(lat)
	return loadResult{tps: float64(len(lat)) / d.Seconds(), p99ms: percentile(lat, 99)}
}

// mariadbLoad runs 4 clients for d, each one `mariadb` process holding one
// connection: it writes a transaction (an UPDATE of a random account and an
// INSERT) followed by a SELECT of a marker, and the round trip until the
// marker comes back is the transaction's latency.
func mariadbLoad(b *testing.B, m *testenv.MariaDB, rows int, d time.Duration) loadResult {
	m.SQL(b, "CREATE TABLE IF NOT EXISTS bench.history (id bigint AUTO_INCREMENT PRIMARY KEY, aid int, delta int, at timestamp DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB")
	var mu sync.Mutex
	var lat []float64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for c := range 4 {
		wg.Go(func() {
			l, err := mariadbClient(m, rows, deadline, uint64(c))
			if err != nil {
				b.Error(err)
			}
			mu.Lock()
			lat = append(lat, l...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return summarize(lat, d)
}

func mariadbClient(m *testenv.MariaDB, rows int, deadline time.Time, seed uint64) ([]float64, error) {
	cmd := m.Command("mariadb", "--batch", "--skip-column-names", "--unbuffered", "bench")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { in.Close(); _ = cmd.Wait() }()
	r := bufio.NewReader(out)
	rnd := rand.New(rand.NewPCG(seed, 7))
	var lat []float64
	for n := 0; time.Now().Before(deadline); n++ {
		aid, delta := 1+rnd.IntN(rows), rnd.IntN(10000)-5000
		start := time.Now()
		fmt.Fprintf(in, "BEGIN; UPDATE accounts SET abalance = abalance + %d WHERE aid = %d; INSERT INTO history (aid, delta) VALUES (%d, %d); COMMIT; SELECT %d;\n",
			delta, aid, aid, delta, n)
		line, err := r.ReadString('\n')
		if err != nil {
			return lat, err
		}
		if strings.TrimSpace(line) != strconv.Itoa(n) {
			return lat, fmt.Errorf("mariadb answered %q, want %d", line, n)
		}
		lat = append(lat, float64(time.Since(start).Microseconds())/1000)
	}
	return lat, nil
}

// printImpact prints one database's phases, with ratios to the undisturbed
// load, and the I/O scheduler of the disk its data is on: I/O priorities
// only take effect under BFQ.
func printImpact(title, dataDir string, phases []*impactPhase) {
	fmt.Printf("\n## Impact on the database: %s\n\n", title)
	fmt.Printf("Data directory %s on a disk whose I/O scheduler is %s.\n\n", dataDir, ioScheduler(dataDir))
	fmt.Println("| phase | TPS | ratio | p99 latency | ratio | backups | backup wall (median) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	base := phases[0].load
	for _, p := range phases {
		wall := ""
		if len(p.backups) > 0 {
			ws := slices.Clone(p.backups)
			slices.Sort(ws)
			wall = ws[len(ws)/2].Round(10 * time.Millisecond).String()
		}
		fmt.Printf("| %s | %.0f | %.2f× | %.1f ms | %.2f× | %d | %s |\n", p.name, p.load.tps, p.load.tps/base.tps,
			p.load.p99ms, p.load.p99ms/base.p99ms, len(p.backups), wall)
	}
}

// ioScheduler reads the scheduler of the block device holding path, as
// /sys/block/<dev>/queue/scheduler shows it (the active one in brackets).
func ioScheduler(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	dev := fmt.Sprintf("/sys/dev/block/%d:%d", st.Dev>>8&0xfff, st.Dev&0xff|st.Dev>>12&0xfff00)
	for _, f := range []string{dev + "/queue/scheduler", dev + "/../queue/scheduler"} {
		if b, err := os.ReadFile(f); err == nil {
			real, _ := filepath.EvalSymlinks(filepath.Dir(filepath.Dir(f)))
			return fmt.Sprintf("`%s` (%s)", strings.TrimSpace(string(b)), filepath.Base(real))
		}
	}
	return "unknown (no queue/scheduler for device " + filepath.Base(dev) + ", e.g. an overlay or tmpfs)"
}
