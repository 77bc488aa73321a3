package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
)

// cpuSeconds reads a process's user+system CPU time from /proc.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks (USER_HZ = 100)
}

// BenchmarkAgentIdle: the agent's resident memory and CPU while it waits for
// its schedule, over REMORA_BENCH_IDLE_SECONDS (default 60), with /metrics
// scraped every 15 s as Prometheus would.
func BenchmarkAgentIdle(b *testing.B) {
	seconds := envInt("REMORA_BENCH_IDLE_SECONDS", 60)
	dir := b.TempDir()
	remora := remoraBinary(b)
	os.WriteFile(filepath.Join(dir, "annotations"), []byte(`remora.dev/schedule="H H * * *"`+"\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "store"), 0o755)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	cmd := exec.Command(remora, "agent")
	cmd.Env = append(os.Environ(), "REMORA_STORAGE=file://"+filepath.Join(dir, "store"), "REMORA_DRIVER=postgres",
		"REMORA_DSN=postgres://postgres@127.0.0.1:1/postgres", "REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=db-0",
		"REMORA_ANNOTATIONS="+filepath.Join(dir, "annotations"), "REMORA_SOCKET="+filepath.Join(dir, "agent.sock"), "REMORA_METRICS_ADDR="+addr)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(2 * time.Second)
	pid := cmd.Process.Pid
	cpu0 := cpuSeconds(pid)
	var peak, anon, file int64
	for i := 0; i < seconds; i++ {
		if i%15 == 0 {
			exec.Command("curl", "-fsS", "-o", "/dev/null", "http://"+addr+"/metrics").Run()
		}
		time.Sleep(time.Second)
		if rss := statusKB(pid, "VmRSS:"); rss > peak {
			peak, anon, file = rss, statusKB(pid, "RssAnon:"), statusKB(pid, "RssFile:")
		}
	}
	cpu := cpuSeconds(pid) - cpu0
	fmt.Printf("\nremora agent idle over %ds: peak RSS %.1f MiB (its own memory %.1f MiB, pages of the binary %.1f MiB), CPU %.2fs (%.3f%% of one core)\n",
		seconds, float64(peak)/1024, float64(anon)/1024, float64(file)/1024, cpu, 100*cpu/float64(seconds))
}
