package bench

import (
	"bufio"
	"bytes"
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

// A load's outcome over one phase: transactions per second, the 99th
// percentile of their latency, and the CPU seconds the load generator used.
type loadResult struct {
	tps   float64
	p99ms float64
	cpu   float64
}

// impactSetting is what runs beside the load: nothing, or `remora backup`
// back to back with these arguments.
type impactSetting struct {
	name string
	args []string // of remora backup; nil: no backup
}

func impactSettings() []impactSetting {
	return []impactSetting{
		{name: "undisturbed"},
		{name: "`remora backup` (default: `--priority low`)", args: []string{"--priority", "low"}},
		{name: "`remora backup --priority normal`", args: []string{"--priority", "normal"}},
		{name: "`remora backup --max-rate 20Mi` (low)", args: []string{"--priority", "low", "--max-rate", "20Mi"}},
	}
}

// impactSample is one phase: the load, the backups beside it (finished, and
// started: the one running when the load ends is interrupted), and the CPU
// seconds each party used.
type impactSample struct {
	load    loadResult
	walls   []time.Duration
	started int
	cpu     cpuUse
}

// cpuUse is CPU seconds over a phase: the database server with everything
// it forked (its backends, the one serving the dump included), the load
// generator, `remora backup` with its children (the dump tool), the S3
// server, the rest of the machine (this benchmark's own process and
// whatever else runs), and idle.
type cpuUse struct {
	db, load, backup, s3, other, idle float64
}

func (u cpuUse) plus(v cpuUse) cpuUse {
	return cpuUse{u.db + v.db, u.load + v.load, u.backup + v.backup, u.s3 + v.s3, u.other + v.other, u.idle + v.idle}
}

// impactCell is one setting in one mode, one sample a round.
type impactCell struct {
	setting impactSetting
	pod     bool
	samples []impactSample
}

// impactRun is one database under test.
type impactRun struct {
	remora string
	env    []string
	url    string
	load   func(procs string) loadResult // procs: the cgroup to run in, "" for none
	dbPID  int
	s3PID  int
	cg     *podCgroups // nil: no pod mode
}

// BenchmarkImpact: what a backup costs the database it protects. A write
// load runs for the same duration alone; beside `remora backup` run back to
// back at the default priority (low); at normal priority; and at low
// priority capped at 20 MiB/s (--max-rate). Each phase reports the load's
// TPS and p99 latency, the backups' wall time, and where the CPU went.
//
// Every setting runs in two modes. Flat: everything on the same cores in
// one cgroup, where only niceness ranks the backup below the database.
// Pod (root only): cgroups laid out as the kubelet lays out a pod, each
// container weighted by its CPU request (podCgroups). The settings take
// turns, each mode right after the other, for REMORA_BENCH_IMPACT_ROUNDS
// (2) rounds, and the load alone runs once more at the end: the spread of
// the rounds, and of the undisturbed runs most of all, is the noise.
// REMORA_BENCH_IMPACT_SECONDS (8) is each phase's length,
// REMORA_BENCH_IMPACT_SCALE (15) pgbench's scale, and
// REMORA_BENCH_IMPACT_MIB (100) the MariaDB data.
func BenchmarkImpact(b *testing.B) {
	d := time.Duration(envInt("REMORA_BENCH_IMPACT_SECONDS", 8)) * time.Second
	s3 := testenv.StartS3(b)
	s3.MakeBucket(b, "bench")
	remora := remoraBinary(b)
	cg, err := newPodCgroups()
	if err != nil {
		fmt.Printf("\nPod mode skipped: cannot make cgroups (needs root and a writable cgroup v1 cpu or v2 hierarchy): %v\n", err)
	} else {
		b.Cleanup(cg.remove)
		fmt.Printf("\nPod mode: %s. %s. The S3 server's cgroup stands in for storage on another machine: "+
			"an approximation, since here it still takes CPU from the same two cores, only last.\n", cg.describe(), ioWeights(cg.v2))
	}
	b.ResetTimer()
	impactPostgres(b, s3, remora, cg, d)
	impactMariaDB(b, s3, remora, cg, d)
}

func impactPostgres(b *testing.B, s3 *testenv.S3, remora string, cg *podCgroups, d time.Duration) {
	pg := testenv.StartPostgres(b)
	pg.Psql(b, "postgres", "CREATE DATABASE bench")
	scale := envInt("REMORA_BENCH_IMPACT_SCALE", 15)
	if out, err := pg.Command("pgbench", "-i", "-q", "-s", strconv.Itoa(scale), "bench").CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	size := pg.Psql(b, "postgres", "SELECT pg_size_pretty(pg_database_size('bench'))")
	env := append(baseEnv(), s3.Env()...)
	env = append(env, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"), "REMORA_DATABASES=bench",
		"REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=pg-0", "REMORA_LOG_LEVEL=warn")
	x := &impactRun{remora: remora, env: env, url: s3.URL("bench", "pg"), dbPID: pg.PID(), s3PID: s3.PID(), cg: cg,
		load: func(procs string) loadResult { return pgbenchLoad(b, pg, procs, d) }}
	printImpact(fmt.Sprintf("PostgreSQL: pgbench -c 4 -j 2 -T %d (TPC-B-like), scale %d, database of %s", int(d.Seconds()), scale, size),
		pg.Data, d, x.run(b))
}

func impactMariaDB(b *testing.B, s3 *testenv.S3, remora string, cg *podCgroups, d time.Duration) {
	m := testenv.StartMariaDB(b)
	mib := envInt("REMORA_BENCH_IMPACT_MIB", 100)
	seedMariaDB(b, m, "bench", mib)
	size := m.SQL(b, "SELECT CONCAT(ROUND(SUM(data_length + index_length) / 1048576), ' MiB') FROM information_schema.tables WHERE table_schema = 'bench'")
	rows, _ := strconv.Atoi(m.SQL(b, "SELECT COUNT(*) FROM bench.accounts"))
	m.SQL(b, "CREATE TABLE IF NOT EXISTS bench.history (id bigint AUTO_INCREMENT PRIMARY KEY, aid int, delta int, at timestamp DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB")
	env := append(baseEnv(), s3.Env()...)
	env = append(env, "REMORA_DRIVER=mysql", "REMORA_DSN="+m.DSN(), "REMORA_DATABASES=bench",
		"REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=maria-0", "REMORA_LOG_LEVEL=warn")
	x := &impactRun{remora: remora, env: env, url: s3.URL("bench", "maria"), dbPID: m.PID(), s3PID: s3.PID(), cg: cg,
		load: func(procs string) loadResult { return mariadbLoad(b, m, procs, rows, d) }}
	printImpact(fmt.Sprintf("MariaDB: 4 clients, each a persistent `mariadb` connection running UPDATE+INSERT transactions for %ds, database of %s",
		int(d.Seconds()), size), m.Dir, d, x.run(b))
}

// run measures every setting in every mode, round after round, then the
// load alone once more in each mode.
func (x *impactRun) run(b *testing.B) []*impactCell {
	modes := []bool{false}
	if x.cg != nil {
		modes = append(modes, true)
	}
	var cells []*impactCell
	for _, s := range impactSettings() {
		for _, pod := range modes {
			cells = append(cells, &impactCell{setting: s, pod: pod})
		}
	}
	for range envInt("REMORA_BENCH_IMPACT_ROUNDS", 2) {
		for _, c := range cells {
			c.samples = append(c.samples, x.phase(b, c.setting, c.pod))
		}
	}
	for _, c := range cells[:len(modes)] { // the undisturbed ones
		c.samples = append(c.samples, x.phase(b, c.setting, c.pod))
	}
	if x.cg != nil { // home again, for the next database's phases and the servers' shutdown
		x.place(b, false)
	}
	return cells
}

// place puts the database server and the S3 server in their pod cgroups,
// or back where they came from.
func (x *impactRun) place(b *testing.B, pod bool) {
	db, storage := "", ""
	if pod {
		db, storage = "pod/db", "storage"
	}
	if err := x.cg.move(x.dbPID, db); err != nil {
		b.Fatal(err)
	}
	if err := x.cg.move(x.s3PID, storage); err != nil {
		b.Fatal(err)
	}
}

// phase runs the load once with s beside it and accounts the CPU from its
// start until everything it started has exited.
func (x *impactRun) phase(b *testing.B, s impactSetting, pod bool) impactSample {
	loadProcs, backupProcs := "", ""
	if x.cg != nil {
		x.place(b, pod)
		if pod {
			loadProcs, backupProcs = x.cg.procs("pod/db"), x.cg.procs("pod/sidecar")
		}
	}
	before := x.snapshot()
	done := make(chan loadResult, 1)
	go func() { done <- x.load(loadProcs) }()
	var smp impactSample
	if s.args == nil {
		smp.load = <-done
	} else {
		smp = x.backupsUntil(b, s.args, backupProcs, done)
	}
	after := x.snapshot()
	smp.cpu = cpuUse{db: after.db - before.db, load: smp.load.cpu, backup: smp.cpu.backup, s3: after.s3 - before.s3,
		idle: after.idle - before.idle}
	smp.cpu.other = after.busy - before.busy - smp.cpu.db - smp.cpu.load - smp.cpu.backup - smp.cpu.s3
	return smp
}

// backupsUntil runs remora backup again and again until the load is done,
// then interrupts the one running (SIGTERM: it removes what it wrote).
func (x *impactRun) backupsUntil(b *testing.B, args []string, procs string, done <-chan loadResult) impactSample {
	var smp impactSample
	for {
		cmd := inCgroup(exec.Command(x.remora, append([]string{"backup", "--storage", x.url}, args...)...), procs)
		cmd.Env = x.env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatalf("remora backup: %v", err)
		}
		smp.started++
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			if err != nil {
				b.Fatalf("remora backup: %v\n%s", err, out.Bytes())
			}
			smp.walls = append(smp.walls, time.Since(start))
			smp.cpu.backup += processCPU(cmd)
		case smp.load = <-done:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			smp.cpu.backup += processCPU(cmd)
			return smp
		}
	}
}

// processCPU is the CPU seconds an exited process used, with the children
// it waited for (wait4's rusage).
func processCPU(cmd *exec.Cmd) float64 {
	return (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
}

// cpuSnapshot is cumulative CPU seconds at one moment.
type cpuSnapshot struct{ db, s3, busy, idle float64 }

func (x *impactRun) snapshot() cpuSnapshot {
	busy, idle := machineTicks()
	return cpuSnapshot{db: treeCPU(x.dbPID), s3: treeCPU(x.s3PID), busy: busy, idle: idle}
}

// treeCPU is the CPU seconds pid and its live descendants used, each with
// its waited-for children's: a backend that exits moves from the sum of
// the live ones into its parent's children's time, so the sum only grows.
func treeCPU(pid int) float64 {
	var ticks float64
	for _, p := range tree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
		for _, v := range f[11:15] { // utime stime cutime cstime
			n, _ := strconv.ParseFloat(v, 64)
			ticks += n
		}
	}
	return ticks / 100 // USER_HZ
}

// machineTicks is the CPU seconds all processors spent busy, and idle
// (waiting for I/O included), since boot.
func machineTicks() (busy, idle float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest...
	for i, v := range f[1:min(len(f), 9)] {
		n, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 {
			idle += n / 100
		} else {
			busy += n / 100
		}
	}
	return busy, idle
}

// pgbenchLoad runs pgbench's TPC-B-like script for d, in the cgroup procs
// names if any, and reads every transaction's latency from its log.
func pgbenchLoad(b *testing.B, pg *testenv.Postgres, procs string, d time.Duration) loadResult {
	dir := b.TempDir()
	os.Chmod(dir, 0o777) // pgbench may run as the server's user
	// Without -n: each phase starts from vacuumed tables and an empty
	// history, not from the dead rows the phases before it left.
	cmd := inCgroup(pg.Command("pgbench", "-c", "4", "-j", "2", "-T", strconv.Itoa(int(d.Seconds())), "-l", "--log-prefix="+filepath.Join(dir, "pgb"), "bench"), procs)
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
	r := summarize(lat, d)
	r.cpu = processCPU(cmd)
	return r
}

func summarize(lat []float64, d time.Duration) loadResult {
	slices.Sort(lat)
	return loadResult{tps: float64(len(lat)) / d.Seconds(), p99ms: percentile(lat, 99)}
}

// mariadbLoad runs 4 clients for d, each one `mariadb` process holding one
// connection: it writes a transaction (an UPDATE of a random account and an
// INSERT) followed by a SELECT of a marker, and the round trip until the
// marker comes back is the transaction's latency.
func mariadbLoad(b *testing.B, m *testenv.MariaDB, procs string, rows int, d time.Duration) loadResult {
	var mu sync.Mutex
	var lat []float64
	var cpu float64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for c := range 4 {
		wg.Go(func() {
			l, used, err := mariadbClient(m, procs, rows, deadline, uint64(c))
			if err != nil {
				b.Error(err)
			}
			mu.Lock()
			lat, cpu = append(lat, l...), cpu+used
			mu.Unlock()
		})
	}
	wg.Wait()
	r := summarize(lat, d)
	r.cpu = cpu
	return r
}

// mariadbClient is one client: its latencies and the CPU seconds it used.
func mariadbClient(m *testenv.MariaDB, procs string, rows int, deadline time.Time, seed uint64) (lat []float64, cpu float64, err error) {
	cmd := inCgroup(m.Command("mariadb", "--batch", "--skip-column-names", "--unbuffered", "bench"), procs)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	defer func() {
		in.Close()
		_ = cmd.Wait()
		cpu = processCPU(cmd)
	}()
	r := bufio.NewReader(out)
	rnd := rand.New(rand.NewPCG(seed, 7))
	for n := 0; time.Now().Before(deadline); n++ {
		aid, delta := 1+rnd.IntN(rows), rnd.IntN(10000)-5000
		start := time.Now()
		fmt.Fprintf(in, "BEGIN; UPDATE accounts SET abalance = abalance + %d WHERE aid = %d; INSERT INTO history (aid, delta) VALUES (%d, %d); COMMIT; SELECT %d;\n",
			delta, aid, aid, delta, n)
		line, err := r.ReadString('\n')
		if err != nil {
			return lat, 0, err
		}
		if strings.TrimSpace(line) != strconv.Itoa(n) {
			return lat, 0, fmt.Errorf("mariadb answered %q, want %d", line, n)
		}
		lat = append(lat, float64(time.Since(start).Microseconds())/1000)
	}
	return lat, 0, nil
}

// printImpact prints one database's phases, with ratios to the undisturbed
// load of the same mode, then where the CPU went; and the I/O scheduler of
// the disk its data is on: I/O priorities only take effect under BFQ (and
// the class under mq-deadline).
func printImpact(title, dataDir string, d time.Duration, cells []*impactCell) {
	fmt.Printf("\n## Impact on the database: %s\n\n", title)
	fmt.Printf("Data directory %s on a disk whose I/O scheduler is %s. Each figure is one run, in the order run; "+
		"ratios are to the mean of the same mode's undisturbed runs (in brackets: the lowest and highest run's).\n\n", dataDir, ioScheduler(dataDir))
	fmt.Println("| mode | phase | TPS, each run | ratio | p99 latency, each run | ratio | backups finished / started | backup wall (median finished) |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|")
	for _, c := range cells {
		base := baseline(cells, c.pod)
		tps := sampleValues(c, func(s impactSample) float64 { return s.load.tps })
		p99 := sampleValues(c, func(s impactSample) float64 { return s.load.p99ms })
		var walls []time.Duration
		started := 0
		for _, s := range c.samples {
			walls, started = append(walls, s.walls...), started+s.started
		}
		fmt.Printf("| %s | %s | %s | %s | %s ms | %s | %d / %d | %s |\n", modeName(c.pod), c.setting.name,
			joinValues(tps, "%.0f"), ratio(tps, base.load.tps), joinValues(p99, "%.1f"), ratio(p99, base.load.p99ms),
			len(walls), started, medianWall(walls))
	}
	printCPU(d, cells)
}

// printCPU prints the CPU seconds each party used in a phase, averaged over
// the runs, and the work's floor: its CPU seconds over two cores.
func printCPU(d time.Duration, cells []*impactCell) {
	fmt.Printf("\nCPU seconds per phase (mean of the runs; a phase is the load's %d s plus pgbench's initial vacuum and "+
		"the interrupted backup's exit). *db for the dump* is the database's CPU beyond what its transactions cost "+
		"undisturbed (per transaction); *other* is this benchmark's own process, the rest of the machine and steal; "+
		"*work ÷ 2 cores* is (db + load + backup + S3) / 2, the phase's floor if nothing else ran.\n\n", int(d.Seconds()))
	fmt.Println("| mode | phase | db | db for the dump | load | backup | S3 | other | idle | work ÷ 2 cores |")
	fmt.Println("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range cells {
		u, base := meanCPU(c), baseline(cells, c.pod)
		perTx := base.cpu.db / (base.load.tps * d.Seconds())
		var tx float64
		for _, s := range c.samples {
			tx += s.load.tps * d.Seconds() / float64(len(c.samples))
		}
		work := u.db + u.load + u.backup + u.s3
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s s |\n", modeName(c.pod), c.setting.name,
			secs(u.db), secs(u.db-tx*perTx), secs(u.load), secs(u.backup), secs(u.s3), secs(u.other), secs(u.idle), secs(work/2))
	}
}

// secs prints CPU seconds to a tenth; the clock ticks the figures come
// from can make a difference of nothing slightly negative.
func secs(v float64) string {
	if v > -0.05 && v < 0.05 {
		v = 0
	}
	return fmt.Sprintf("%.1f", v)
}

func modeName(pod bool) string {
	if pod {
		return "pod"
	}
	return "flat"
}

// baseline is the mean of the undisturbed runs of a mode: their TPS, p99
// and CPU.
func baseline(cells []*impactCell, pod bool) impactSample {
	for _, c := range cells {
		if c.pod == pod && c.setting.args == nil {
			var s impactSample
			s.load.tps = mean(sampleValues(c, func(s impactSample) float64 { return s.load.tps }))
			s.load.p99ms = mean(sampleValues(c, func(s impactSample) float64 { return s.load.p99ms }))
			s.cpu = meanCPU(c)
			return s
		}
	}
	return impactSample{}
}

func meanCPU(c *impactCell) cpuUse {
	var u cpuUse
	for _, s := range c.samples {
		u = u.plus(s.cpu)
	}
	n := float64(len(c.samples))
	return cpuUse{u.db / n, u.load / n, u.backup / n, u.s3 / n, u.other / n, u.idle / n}
}

func sampleValues(c *impactCell, f func(impactSample) float64) []float64 {
	var v []float64
	for _, s := range c.samples {
		v = append(v, f(s))
	}
	return v
}

func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func joinValues(v []float64, format string) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf(format, x))
	}
	return strings.Join(s, " / ")
}

// ratio is the mean of v over base, with the lowest and highest run's.
func ratio(v []float64, base float64) string {
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", mean(v)/base, slices.Min(v)/base, slices.Max(v)/base)
}

func medianWall(walls []time.Duration) string {
	if len(walls) == 0 {
		return ""
	}
	ws := slices.Clone(walls)
	slices.Sort(ws)
	return ws[len(ws)/2].Round(10 * time.Millisecond).String()
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
