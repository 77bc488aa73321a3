package drill

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// peakInterval is how often the drill's processes are measured.
const peakInterval = 200 * time.Millisecond

// startPeak samples, until the returned function is called, the memory of
// the processes below this one (the throwaway server and the restore
// tools, not processes that were there before, such as a test's servers):
// the sum of their proportional set sizes (Pss, which counts a
// server's shared buffers once, not once per backend), or of their resident
// sets where Pss cannot be read. It returns the largest sum seen, in bytes,
// and a function that takes one sample at once.
func startPeak() (func() int64, func()) {
	var mu sync.Mutex
	var peak int64
	before := map[int]bool{}
	for _, p := range descendants(os.Getpid(), nil) {
		before[p] = true
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	sample := func() {
		var n int64
		for _, p := range descendants(os.Getpid(), before) {
			n += memoryOf(p)
		}
		mu.Lock()
		peak = max(peak, n)
		mu.Unlock()
	}
	go func() {
		defer close(done)
		t := time.NewTicker(peakInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	var once sync.Once
	stopFn := func() int64 {
		once.Do(func() {
			close(stop)
			<-done
		})
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
	return stopFn, sample
}

// descendants lists the processes below pid, leaving out the subtrees of
// those in skip.
func descendants(pid int, skip map[int]bool) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	children := map[int][]int{}
	for _, d := range dirs {
		p, _ := strconv.Atoi(filepath.Base(d))
		if pp := parentOf(d); pp > 0 {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	todo := append([]int(nil), children[pid]...)
	for len(todo) > 0 {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if skip[p] {
			continue
		}
		out = append(out, p)
		todo = append(todo, children[p]...)
	}
	return out
}

// parentOf reads the parent's pid from /proc/PID/stat (the field after the
// command, which may itself hold spaces and parentheses).
func parentOf(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

// memoryOf is a process's Pss (smaps_rollup), else its VmRSS, in bytes.
func memoryOf(pid int) int64 {
	dir := "/proc/" + strconv.Itoa(pid)
	if n := kbField(filepath.Join(dir, "smaps_rollup"), "Pss:"); n >= 0 {
		return n
	}
	return max(kbField(filepath.Join(dir, "status"), "VmRSS:"), 0)
}

// kbField reads a "Name:   123 kB" line; -1 if absent.
func kbField(path, name string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return n << 10
				}
			}
		}
	}
	return -1
}
