package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"remora.dev/remora/internal/pzstd"
)

// compressChildEnv tells a re-run of this test binary to be one contender of
// BenchmarkCompress: "mode:input-file:count-file".
const compressChildEnv = "REMORA_BENCH_COMPRESS_CHILD"

// compressor is one way of compressing the input file to stdout, run as a
// child process so that its CPU time and peak RSS are its own.
type compressor struct {
	name    string
	cores   int // cores it can use: its CPU floor is CPU time / cores
	cmd     func(input, count string) *exec.Cmd
	workers int // for the summary: pzstd's workers, 0 for the others
}

// compressRun is what one run of a compressor measured.
type compressRun struct {
	wall, cpu time.Duration
	rssKB     int64
	out       int64
}

// BenchmarkCompress: the zstd encoders on the same input, half like the
// PostgreSQL bench's pgbench tables (blank filler) and half its rows of
// random words and bytes, REMORA_BENCH_MIB/2 MiB in all (1 GiB by default),
// from a file in the page cache: klauspost's stream encoder as repo used it,
// the parallel frame encoder (pzstd) with one worker on one core, one worker
// and two workers on two, and the zstd CLI at -3 with one and two threads.
func BenchmarkCompress(b *testing.B) {
	input := filepath.Join(b.TempDir(), "dump")
	size := int64(sizeMiB()/2) << 20
	if err := writeCompressInput(input, size); err != nil {
		b.Fatal(err)
	}
	zstdBin, err := exec.LookPath("zstd")
	if err != nil {
		b.Fatal("the zstd CLI is missing: run hack/install-deps.sh")
	}
	self := func(mode string, gomaxprocs int) func(string, string) *exec.Cmd {
		return func(in, count string) *exec.Cmd {
			c := exec.Command(os.Args[0], "-test.run=^TestCompressChild$", "-test.bench=^$")
			c.Env = append(os.Environ(), compressChildEnv+"="+mode+":"+in+":"+count, "GOMAXPROCS="+strconv.Itoa(gomaxprocs))
			return c
		}
	}
	cli := func(threads string) func(string, string) *exec.Cmd {
		return func(in, _ string) *exec.Cmd { return exec.Command(zstdBin, "-3", "-T"+threads, "-q", "-c", in) }
	}
	cs := []compressor{
		{name: "no compression (the child process's own baseline)", cores: 1, cmd: self("copy", 2)},
		{name: "klauspost stream encoder (repo before: concurrency 2, 2 MiB window)", cores: 2, cmd: self("stream", 2)},
		{name: "pzstd, 1 worker, GOMAXPROCS=1", cores: 1, cmd: self("pzstd1", 1), workers: 1},
		{name: "pzstd, 1 worker", cores: 2, cmd: self("pzstd1", 2), workers: 1},
		{name: "pzstd, 2 workers (repo now)", cores: 2, cmd: self("pzstd2", 2), workers: 2},
		{name: "`zstd -3 -T1`", cores: 2, cmd: cli("1")},
		{name: "`zstd -3 -T2`", cores: 2, cmd: cli("2")},
	}
	b.ResetTimer()
	runs := make([][]compressRun, len(cs))
	for range rounds() {
		for i, c := range cs {
			runs[i] = append(runs[i], compressOnce(b, c, input))
			time.Sleep(200 * time.Millisecond) // a settled machine
		}
	}
	b.StopTimer()
	printCompress(size, cs, runs)
}

// compressOnce runs c once and measures it.
func compressOnce(b *testing.B, c compressor, input string) compressRun {
	b.Helper()
	count := filepath.Join(b.TempDir(), "count")
	cmd := c.cmd(input, count)
	var out counted
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s: %v", c.name, err)
	}
	r := compressRun{wall: time.Since(start), out: out.n}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rssKB = ru.Maxrss
	}
	if n, err := os.ReadFile(count); err == nil { // a Go contender counts itself
		r.out, _ = strconv.ParseInt(string(n), 10, 64)
	}
	return r
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type counted struct{ n int64 }

func (c *counted) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func printCompress(size int64, cs []compressor, runs [][]compressRun) {
	fmt.Printf("\nzstd compression of %d MiB (half pgbench rows, half random words and bytes), %d rounds, medians; "+
		"CPU and peak RSS are the compressing process's own\n", size>>20, len(runs[0]))
	fmt.Printf("| contender | wall | MB/s | CPU | CPU floor (CPU / cores) | wall / floor | peak RSS | output | ratio to input |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	walls := make([]time.Duration, len(cs))
	for i, c := range cs {
		ws, cpus := make([]time.Duration, 0), make([]time.Duration, 0)
		var rss, out int64
		for _, r := range runs[i] {
			ws, cpus = append(ws, r.wall), append(cpus, r.cpu)
			rss, out = max(rss, r.rssKB), r.out
		}
		wall, cpu := median(ws), median(cpus)
		walls[i] = wall
		floor := cpu / time.Duration(c.cores)
		fmt.Printf("| %s | %s | %.0f | %.2f s | %.2f s | %.2f× | %.1f MiB | %.1f MiB | %.3f |\n", c.name,
			wall.Round(10*time.Millisecond), float64(size)/wall.Seconds()/1e6, cpu.Seconds(), floor.Seconds(),
			float64(wall)/float64(floor), float64(rss)/1024, float64(out)/(1<<20), float64(out)/float64(size))
	}
	one, oneShared, two := slices.IndexFunc(cs, func(c compressor) bool { return c.workers == 1 && c.cores == 1 }),
		slices.IndexFunc(cs, func(c compressor) bool { return c.workers == 1 && c.cores == 2 }),
		slices.IndexFunc(cs, func(c compressor) bool { return c.workers == 2 })
	fmt.Printf("\npzstd speed-up, 2 workers against 1 worker on 1 core: %.2f×; against 1 worker on 2 cores: %.2f× (target ≥ 1.8×)\n",
		float64(walls[one])/float64(walls[two]), float64(walls[oneShared])/float64(walls[two]))
	fmt.Printf("machine load average at the end: %s\n", loadAverage())
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// TestCompressChild is one contender of BenchmarkCompress when this test
// binary is re-run with compressChildEnv set; otherwise it does nothing. It
// compresses the input to a counter and writes the count to a file (stdout
// also carries the test framework's own words).
func TestCompressChild(t *testing.T) {
	spec := os.Getenv(compressChildEnv)
	if spec == "" {
		t.Skip("run by BenchmarkCompress")
	}
	mode, rest, _ := strings.Cut(spec, ":")
	input, count, _ := strings.Cut(rest, ":")
	var out counted
	var w io.WriteCloser
	var err error
	switch mode {
	case "copy":
		w = nopCloser{&out}
	case "stream":
		w, err = zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(2<<20))
	case "pzstd1", "pzstd2":
		w, err = pzstd.NewWriter(&out, pzstd.Options{Workers: int(mode[5] - '0')})
	default:
		t.Fatalf("mode %q", mode)
	}
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(input)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Through a plain writer, as repo's chain writes: no ReadFrom shortcut.
	if _, err := io.Copy(struct{ io.Writer }{w}, f); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(count, []byte(strconv.FormatInt(out.n, 10)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeCompressInput writes size bytes: first rows as pg_dump writes
// pgbench_accounts (an id, a branch, a balance and 84 blanks of filler),
// then writeDocs's rows of random words and random bytes.
func writeCompressInput(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	filler := bytes.Repeat([]byte{' '}, 84)
	var line []byte
	var n int64
	for aid := 1; n < size/2; aid++ {
		line = fmt.Appendf(line[:0], "%d\t%d\t%d\t%s\n", aid, 1+aid/100000, 0, filler)
		n += int64(len(line))
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	if err := writeDocs(w, int(size-n), `\\x`); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
