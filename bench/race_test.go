package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/testenv"
)

// contender is one way of doing the same job.
type contender struct {
	name   string
	cmd    func(round int) *exec.Cmd
	before func(round int) // untimed preparation before each run
	prefix string          // where it stores in the bucket, for the stored size
	need   string          // a program it needs
}

// result is what a race measured for one contender.
type result struct {
	walls  []time.Duration
	cpu    []time.Duration // CPU time of the whole machine during the run
	ownKB  int64           // peak RSS of the process itself
	treeKB int64           // peak RSS of the process and its descendants together
	stored int64           // bytes stored per run
}

// race runs the contenders in turn, rounds times (so that a slow phase of the
// machine hits them all alike), and prints a table whose ratios are against
// the first one.
func race(b *testing.B, title string, rounds int, s3 *testenv.S3, bucket string, cs []contender) []result {
	b.Helper()
	for _, c := range cs {
		if _, err := exec.LookPath(c.need); c.need != "" && err != nil {
			b.Fatalf("%s needs %s: run hack/install-deps.sh", c.name, c.need)
		}
	}
	rs := make([]result, len(cs))
	for round := 0; round < rounds; round++ {
		for i, c := range cs {
			if c.before != nil {
				c.before(round)
			}
			cmd := c.cmd(round)
			if cmd.Stdout == nil {
				cmd.Stdout = io.Discard
			}
			s := measure(b, c.name, cmd)
			rs[i].walls = append(rs[i].walls, s.wall)
			rs[i].cpu = append(rs[i].cpu, s.cpu)
			rs[i].ownKB = max(rs[i].ownKB, s.ownKB)
			rs[i].treeKB = max(rs[i].treeKB, s.treeKB)
			time.Sleep(200 * time.Millisecond) // a settled machine
		}
	}
	for i, c := range cs {
		if c.prefix != "" {
			rs[i].stored = stored(b, s3, bucket, c.prefix) / int64(rounds)
		}
	}
	limit := median(rs[0].walls)
	fmt.Printf("\n%s: %d rounds, medians\n", title, rounds)
	fmt.Printf("| %s | %s | %s | %s | %s | %s | %s |\n|---|---:|---:|---:|---:|---:|---:|\n",
		"contender", "wall", "ratio", "CPU (machine, busy)", "peak RSS (itself)", "peak RSS (with children)", "stored")
	for i, c := range cs {
		st := ""
		if rs[i].stored > 0 {
			st = fmt.Sprintf("%.1f MiB", float64(rs[i].stored)/(1<<20))
		}
		wall, cpu := median(rs[i].walls), median(rs[i].cpu)
		fmt.Printf("| %s | %s | %.2f× | %.1f s, %.0f %% | %.1f MiB | %.1f MiB | %s |\n", c.name,
			wall.Round(10*time.Millisecond), float64(wall)/float64(limit), cpu.Seconds(),
			100*cpu.Seconds()/wall.Seconds()/float64(runtime.NumCPU()), float64(rs[i].ownKB)/1024, float64(rs[i].treeKB)/1024, st)
	}
	return rs
}

// sample is one timed run: wall time, the CPU time the whole machine spent
// meanwhile (database server and S3 server included; printed with how busy
// that kept all its cores), the peak RSS of the process itself (VmHWM), and
// the peak of the summed RSS of it and all its descendants (a pipeline's
// processes together), polled while it runs.
type sample struct {
	wall   time.Duration
	cpu    time.Duration
	ownKB  int64
	treeKB int64
}

func measure(b *testing.B, name string, cmd *exec.Cmd) sample {
	b.Helper()
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	cpu0 := machineCPU()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	var s sample
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			s.wall = time.Since(start)
			s.cpu = machineCPU() - cpu0
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			return s
		case <-tick.C:
			pid := cmd.Process.Pid
			s.ownKB = max(s.ownKB, statusKB(pid, "VmHWM:"))
			var sum int64
			for _, p := range tree(pid) {
				sum += statusKB(p, "VmRSS:")
			}
			s.treeKB = max(s.treeKB, sum)
		}
	}
}

// tree is pid and all its descendants.
func tree(pid int) []int {
	all := []int{pid}
	for i := 0; i < len(all); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", all[i]))
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					all = append(all, n)
				}
			}
		}
	}
	return all
}

// machineCPU is the CPU time all processors have spent busy since boot.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var ticks int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already in user
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// statusKB reads a size in KiB from a process's status file, such as
// "VmHWM:" (its peak resident set) or "VmRSS:" (its resident set now).
func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
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

// stored sums the sizes of the objects below prefix in the bucket, manifests
// and verification records left out.
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

// rcloneEnv configures rclone's remote "s3:" for the test server, as an
// operator's shell pipeline would upload.
func rcloneEnv(s3 *testenv.S3) []string {
	return []string{"RCLONE_CONFIG_S3_TYPE=s3", "RCLONE_CONFIG_S3_PROVIDER=Other", "RCLONE_CONFIG_S3_ENDPOINT=http://" + s3.Endpoint,
		"RCLONE_CONFIG_S3_ACCESS_KEY_ID=" + s3.AccessKey, "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY=" + s3.SecretKey,
		"RCLONE_CONFIG_S3_REGION=" + s3.Region, "RCLONE_CONFIG_S3_FORCE_PATH_STYLE=true"}
}

// baseEnv is the environment for contenders, without settings of this
// machine that would change how the AWS SDK inside rclone connects.
func baseEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "AWS_") })
}

// shell makes a contender out of a bash pipeline; in script, {round} is the
// round number and {name} what vars maps name to.
func shell(env []string, script string, vars map[string]string) func(int) *exec.Cmd {
	return func(round int) *exec.Cmd {
		pairs := []string{"{round}", strconv.Itoa(round)}
		for k, v := range vars {
			pairs = append(pairs, "{"+k+"}", v)
		}
		c := exec.Command("bash", "-o", "pipefail", "-c", strings.NewReplacer(pairs...).Replace(script))
		c.Env = env
		return c
	}
}

// dumpTriple is the limit / remora / pipeline triple for a dump tool whose
// command line is {dump} in vars: the dump to /dev/null; `remora backup` to
// S3 with env; the dump through zstd -3 into rclone rcat, objects named
// with ext.
func dumpTriple(tool, ext, remora string, env, shellEnv []string, s3 *testenv.S3, vars map[string]string) []contender {
	return []contender{
		{name: "`" + tool + " > /dev/null` (limit)", cmd: shell(shellEnv, "{dump} > /dev/null", vars)},
		{name: "`remora backup` → S3 (zstd)", prefix: "r/", cmd: func(int) *exec.Cmd {
			c := exec.Command(remora, "backup", "--storage", s3.URL("bench", "r"))
			c.Env = env
			return c
		}},
		{name: "`" + tool + " \\| zstd -3 \\| rclone rcat` (pipeline)", prefix: "pipe/", need: "rclone",
			cmd: shell(shellEnv, "{dump} | zstd -q -3 | rclone rcat s3:bench/pipe/{round}"+ext, vars)},
	}
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// remoraBinary builds the remora command once per run, as the image does:
// static, without symbols.
func remoraBinary(b *testing.B) string {
	b.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "remora-bench")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "remora")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", built, "remora.dev/remora/cmd/remora")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	return built
}

// writeDocs writes about n bytes of tab-separated rows of realistic, poorly
// compressible data: a title and a body of random words from an 8000-word
// vocabulary, and 48 random bytes in hex. Deterministic.
func writeDocs(w io.Writer, n int, blobPrefix string) error {
	r := newRand()
	vocab := make([]string, 8000)
	for i := range vocab {
		word := make([]byte, 3+r.IntN(9))
		for j := range word {
			word[j] = byte('a' + r.IntN(26))
		}
		vocab[i] = string(word)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	blob := make([]byte, 48)
	var line []byte
	for written := 0; written < n; {
		line = line[:0]
		for i := 0; i < 4; i++ {
			line = append(append(line, vocab[r.IntN(len(vocab))]...), ' ')
		}
		line = append(line, '\t')
		for i := 0; i < 60; i++ {
			line = append(append(line, vocab[r.IntN(len(vocab))]...), ' ')
		}
		line = append(append(line, '\t'), blobPrefix...)
		for i := range blob {
			blob[i] = byte(r.Uint32())
		}
		line = fmt.Appendf(line, "%x\n", blob)
		written += len(line)
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}
