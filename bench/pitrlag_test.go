package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"remora.dev/remora/drivers/postgres"
)

const lagMethod = `Archive lag, method: every 100 ms one goroutine reads the server's pg_current_wal_insert_lsn() (X, over
its own connection) and then the agent's stored_lsn (S, everything before it is in the archive) over its
control socket. Lag in time, per sample: from the moment the server had inserted WAL up to X to the first
later sample whose S is at X or past it (so each figure is up to 100 ms over the truth). Lag in bytes, per
sample: X - S. The agent's own lag_bytes (the server's sent WAL end minus S) is shown beside. Samples are
those taken while pgbench runs; after it, sampling goes on until the archive holds everything.
`

const lagHeader = "| flush | pgbench TPS | WAL rate | lag p50 | lag p99 | lag max | bytes behind p50 | p99 | agent's lag_bytes p99 | agent CPU | agent peak RSS |\n" +
	"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"

// lagSample is one reading of the server's and the archive's positions.
type lagSample struct {
	at        time.Time
	insert    postgres.LSN // the server's insert position at 'at'
	stored    postgres.LSN // the archive's end, read right after
	statusLag uint64       // the agent's own lag_bytes
}

// sample reads positions every 100 ms until ctx ends.
func (a *agentRun) sample(ctx context.Context, conn *pgx.Conn) []lagSample {
	var ss []lagSample
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ss
		case <-tick.C:
		}
		s := lagSample{at: time.Now()}
		lsn, err := a.p.insertLSN(conn)
		if err != nil {
			continue
		}
		s.insert = lsn
		w := a.status()
		if w == nil {
			continue
		}
		s.stored, _ = postgres.ParseLSN(w.Stored)
		s.statusLag = w.LagBytes
		ss = append(ss, s)
	}
}

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+)`)

// lagRow runs pgbench for seconds while sampling, waits until the archive
// holds all the WAL, and returns the table's row.
func (a *agentRun) lagRow(seconds int) string {
	b := a.p.b
	conn, err := pgx.Connect(context.Background(), a.p.pg.DSN("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []lagSample, 1)
	go func() { done <- a.sample(ctx, conn) }()
	pid := a.proc.Cmd.Process.Pid
	cpu0 := cpuSeconds(pid)
	start := time.Now()
	out := a.p.pgbench("-c", "4", "-j", "2", "-T", strconv.Itoa(seconds))
	end := time.Now()
	a.waitArchived()
	time.Sleep(200 * time.Millisecond) // a last sample past the end
	cancel()
	ss := <-done
	if os.Getenv("REMORA_BENCH_DEBUG") != "" {
		for _, s := range ss[:min(len(ss), 400)] {
			fmt.Printf("%s %s %s %d\n", s.at.Format("15:04:05.000"), s.insert, s.stored, s.statusLag)
		}
	}
	cpu, elapsed := cpuSeconds(pid)-cpu0, time.Since(start)
	tps := "?"
	if m := tpsRE.FindStringSubmatch(out); m != nil {
		tps = m[1]
	}
	var lags, behind, own []float64
	var first, last lagSample
	for i, s := range ss {
		if s.at.Before(start) || s.at.After(end) {
			continue
		}
		if first.at.IsZero() {
			first = s
		}
		last = s
		j := slices.IndexFunc(ss[i:], func(t lagSample) bool { return t.stored >= s.insert })
		if j < 0 {
			b.Fatalf("the archive never reached %s, inserted at %s", s.insert, s.at)
		}
		lags = append(lags, ss[i+j].at.Sub(s.at).Seconds())
		behind = append(behind, float64(max(int64(s.insert)-int64(s.stored), 0)))
		own = append(own, float64(s.statusLag))
	}
	if len(lags) == 0 {
		b.Fatal("no lag samples")
	}
	rate := float64(last.insert-first.insert) / last.at.Sub(first.at).Seconds() / (1 << 20)
	return fmt.Sprintf("| %s | %s | %.1f MiB/s | %.2f s | %.2f s | %.2f s | %s | %s | %s | %.0f %% of a core | %.1f MiB |\n",
		a.flush, tps, rate, percentile(lags, 50), percentile(lags, 99), percentile(lags, 100), mib(percentile(behind, 50)), mib(percentile(behind, 99)),
		mib(percentile(own, 99)), 100*cpu/elapsed.Seconds(), float64(statusKB(pid, "VmHWM:"))/1024)
}

// percentile is the p-th percentile (nearest rank).
func percentile(v []float64, p float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func mib(n float64) string { return fmt.Sprintf("%.1f MiB", n/(1<<20)) }
