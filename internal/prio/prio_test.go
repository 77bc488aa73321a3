package prio

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// procNice reads the niceness of a thread or process from its stat file.
func procNice(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NiceOfStat(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func ioprioOf(t *testing.T, tid int) int {
	t.Helper()
	r, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
	if e != 0 {
		t.Fatal(e)
	}
	return int(r)
}

var cases = []struct {
	p            Priority
	nice, ioprio int
}{
	{Low, 10, 2<<13 | 7},
	{Idle, 19, 3 << 13},
}

// TestGoLowersItsThreadOnly: fn runs on a thread at the priority's nice and
// I/O class, the caller's thread keeps its own, and the lowered thread is
// gone once fn has returned.
func TestGoLowersItsThreadOnly(t *testing.T) {
	for _, c := range cases {
		t.Run(string(c.p), func(t *testing.T) {
			ctx := With(context.Background(), c.p, nil)
			var tid, nice, ioprio int
			Run(ctx, func() {
				tid = unix.Gettid()
				nice = procNice(t, fmt.Sprintf("/proc/self/task/%d/stat", tid))
				ioprio = ioprioOf(t, tid)
			})
			if nice != c.nice || ioprio != c.ioprio {
				t.Errorf("in fn: nice %d, ioprio %#x; want %d, %#x", nice, ioprio, c.nice, c.ioprio)
			}
			if n := procNice(t, "/proc/thread-self/stat"); n != 0 {
				t.Errorf("the caller's thread has nice %d", n)
			}
			waitGone(t, tid)
		})
	}
}

// waitGone waits until the thread has ended: the goroutine left it locked.
// The main thread is not ended but parked for good by the runtime, never
// to run Go code again.
func waitGone(t *testing.T, tid int) {
	t.Helper()
	if tid == os.Getpid() {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d outlived the goroutine that lowered it", tid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStartChildInherits: a child started at a priority has its nice and
// I/O class.
func TestStartChildInherits(t *testing.T) {
	for _, c := range append(cases, struct {
		p            Priority
		nice, ioprio int
	}{p: Normal}) {
		t.Run(string(c.p), func(t *testing.T) {
			if c.p == Normal {
				// The child has the priority of the thread that started it.
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				c.nice, c.ioprio = procNice(t, "/proc/thread-self/stat"), ioprioOf(t, unix.Gettid())
			}
			cmd := exec.Command("cat")
			in, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := Start(With(context.Background(), c.p, nil), cmd); err != nil {
				t.Fatal(err)
			}
			defer func() { in.Close(); _ = cmd.Wait() }()
			pid := cmd.Process.Pid
			if n := procNice(t, "/proc/"+strconv.Itoa(pid)+"/stat"); n != c.nice {
				t.Errorf("child nice %d, want %d", n, c.nice)
			}
			if p := ioprioOf(t, pid); p != c.ioprio {
				t.Errorf("child ioprio %#x, want %#x", p, c.ioprio)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for in, want := range map[string]Priority{"": Low, "low": Low, "idle": Idle, "normal": Normal} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Parse("high"); err == nil || !strings.Contains(err.Error(), "want low, idle or normal") {
		t.Errorf("Parse(high): %v", err)
	}
}
