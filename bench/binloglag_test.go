package bench

import (
	"bufio"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/control"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

const binlogLagMethod = `Binary log archive lag, method: a write load of 4 sessions, each a mariadb client fed single-row
INSERT transactions (autocommit) as fast as it takes them; every 100 ms a sampler reads SHOW MASTER STATUS
(X: the end of the server's binary log) and then the agent's stored position (S) over its control socket.
Lag per sample: from the moment the log reached X to the first later sample whose S is at X or past it (up
to 100 ms plus one sampler round over the truth). Bytes behind: X - S within one file.
`

// binlogPos is a place in the binary log.
type binlogPos struct {
	file string
	pos  uint64
}

func (p binlogPos) atOrPast(q binlogPos) bool {
	return p.file > q.file || p.file == q.file && p.pos >= q.pos
}

func parseBinlogPos(s string) (binlogPos, bool) {
	f, p, ok := strings.Cut(s, "@")
	n, err := strconv.ParseUint(p, 10, 64)
	return binlogPos{f, n}, ok && err == nil
}

type binlogSample struct {
	at     time.Time
	end    binlogPos
	stored binlogPos
}

// BenchmarkBinlogLag: the archive lag of `remora agent`'s binary log
// streaming under a MariaDB write load, at the default flush interval and
// at 1 s. REMORA_BENCH_LOAD_SECONDS (default 30) sets the load's length.
func BenchmarkBinlogLag(b *testing.B) {
	db := testenv.StartMariaDBWith(b, testenv.MariaDBOptions{LogBin: true})
	db.SQL(b, "CREATE DATABASE shop; CREATE TABLE shop.orders (id bigint AUTO_INCREMENT PRIMARY KEY, item varchar(64), qty int, note varchar(200))")
	s3 := testenv.StartS3(b)
	s3.MakeBucket(b, "binlog")
	r := &testenv.Remora{Bin: remoraBinary(b)}
	seconds := envInt("REMORA_BENCH_LOAD_SECONDS", 30)
	b.ResetTimer()
	fmt.Printf("\n%s\n| flush | write TPS | binary log rate | lag p50 | lag p99 | lag max | bytes behind p99 | agent CPU | agent peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n", binlogLagMethod)
	for _, flush := range []time.Duration{10 * time.Second, time.Second} {
		name := "flush" + strconv.Itoa(int(flush.Seconds()))
		podinfo := b.TempDir()
		sock := filepath.Join(testenv.SocketDir(b), "agent.sock")
		testenv.WriteDownwardAPI(b, podinfo, map[string]string{"remora.dev/pitr": "on", "remora.dev/pitr-flush": flush.String()})
		env := append(append(baseEnv(), s3.Env()...), "REMORA_DRIVER=mysql", "REMORA_DSN="+db.DSN(), "REMORA_NAMESPACE=bench",
			"REMORA_WORKLOAD="+name, "REMORA_LOG_LEVEL=warn", "REMORA_METRICS_ADDR=", "REMORA_STORAGE="+s3.URL("binlog", name),
			"REMORA_ANNOTATIONS="+filepath.Join(podinfo, "annotations"), "REMORA_SOCKET="+sock)
		proc := clitest.StartAgent(b, r, env, sock)
		c, err := control.Dial(sock)
		if err != nil {
			b.Fatal(err)
		}
		stored := func() (binlogPos, bool) {
			st, err := c.Status(context.Background())
			if err != nil || st.WAL == nil || !st.WAL.Connected {
				return binlogPos{}, false
			}
			return parseBinlogPos(st.WAL.Stored)
		}
		end := func() binlogPos {
			f := strings.Fields(db.SQL(b, "SHOW MASTER STATUS"))
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return binlogPos{f[0], n}
		}
		caughtUp := func() {
			want := end()
			testenv.WaitFor(b, "the archive to hold the binary log", 5*time.Minute, func() bool {
				p, ok := stored()
				return ok && p.atOrPast(want)
			})
		}
		caughtUp()
		fmt.Print(binlogLagRow(b, db, proc, flush, seconds, stored, end, caughtUp))
		if ok, _ := proc.Stop(syscall.SIGTERM, 30*time.Second); !ok {
			b.Errorf("the agent did not stop")
		}
	}
}

// binlogLagRow runs the write load for seconds while sampling, then waits
// until the archive holds everything, and returns the table's row.
func binlogLagRow(b *testing.B, db *testenv.MariaDB, proc *testenv.Process, flush time.Duration, seconds int,
	stored func() (binlogPos, bool), end func() binlogPos, caughtUp func()) string {
	ctx, cancel := context.WithCancel(context.Background())
	samples := make(chan []binlogSample, 1)
	go func() {
		var ss []binlogSample
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				samples <- ss
				return
			case <-tick.C:
			}
			s := binlogSample{at: time.Now(), end: end()}
			if p, ok := stored(); ok {
				s.stored = p
				ss = append(ss, s)
			}
		}
	}()
	pid := proc.Cmd.Process.Pid
	cpu0 := cpuSeconds(pid)
	start := time.Now()
	first := end()
	n := writeLoad(b, db, 4, time.Duration(seconds)*time.Second)
	loadEnd := time.Now()
	last := end()
	caughtUp()
	time.Sleep(200 * time.Millisecond) // a last sample past the end
	cancel()
	ss := <-samples
	cpu, elapsed := cpuSeconds(pid)-cpu0, time.Since(start)
	var lags, behind []float64
	for i, s := range ss {
		if s.at.Before(start) || s.at.After(loadEnd) {
			continue
		}
		j := slices.IndexFunc(ss[i:], func(t binlogSample) bool { return t.stored.atOrPast(s.end) })
		if j < 0 {
			b.Fatalf("the archive never reached %v", s.end)
		}
		lags = append(lags, ss[i+j].at.Sub(s.at).Seconds())
		if s.end.file == s.stored.file && s.end.pos > s.stored.pos {
			behind = append(behind, float64(s.end.pos-s.stored.pos))
		} else {
			behind = append(behind, 0)
		}
	}
	if len(lags) == 0 {
		b.Fatal("no lag samples")
	}
	rate := "?"
	if first.file == last.file {
		rate = fmt.Sprintf("%.1f MiB/s", float64(last.pos-first.pos)/loadEnd.Sub(start).Seconds()/(1<<20))
	}
	return fmt.Sprintf("| %s | %.0f | %s | %.2f s | %.2f s | %.2f s | %s | %.0f %% of a core | %.1f MiB |\n",
		flush, float64(n)/loadEnd.Sub(start).Seconds(), rate, percentile(lags, 50), percentile(lags, 99), percentile(lags, 100),
		mib(percentile(behind, 99)), 100*cpu/elapsed.Seconds(), float64(statusKB(pid, "VmHWM:"))/1024)
}

// writeLoad runs sessions clients, each committing single-row INSERTs as
// fast as the server takes them, for d; it returns how many committed.
func writeLoad(b *testing.B, db *testenv.MariaDB, sessions int, d time.Duration) int64 {
	count := func() int64 {
		n, _ := strconv.ParseInt(strings.TrimSpace(db.SQL(b, "SELECT COUNT(*) FROM shop.orders")), 10, 64)
		return n
	}
	before := count()
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := db.Command("mariadb", "--batch", "--skip-column-names", "shop")
			in, err := cmd.StdinPipe()
			if err != nil {
				b.Error(err)
				return
			}
			if err := cmd.Start(); err != nil {
				b.Error(err)
				return
			}
			w := bufio.NewWriter(in)
			for i := 0; time.Now().Before(deadline); i++ {
				fmt.Fprintf(w, "INSERT INTO orders (item, qty, note) VALUES ('item-%d-%d', %d, REPEAT('n', %d));\n", s, i, i%10, i%200)
				if i%50 == 49 {
					w.Flush()
				}
			}
			w.Flush()
			in.Close()
			if err := cmd.Wait(); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	return count() - before
}
