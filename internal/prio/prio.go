// Package prio runs a backup's work at a lower CPU and I/O priority than the
// database it protects (remora.dev/priority).
//
// Linux keeps niceness and I/O priority per thread, and a process without
// CAP_SYS_NICE cannot lower its niceness again (RLIMIT_NICE is 0 in a
// container). So the agent never lowers a thread it will use for anything
// else: Go runs fn on a goroutine locked to its OS thread, lowers that
// thread, and lets the goroutine end still locked, which ends the thread
// with it. A child process started from such a thread inherits both
// priorities (fork copies them), so a dump tool and every helper it starts
// run at the priority of the backup. Threads the Go runtime creates while a
// lowered thread runs are cloned from its template thread, never from a
// locked one, so the priority does not spread to the agent's other work.
package prio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Priority is a value of remora.dev/priority.
type Priority string

// The priorities.
const (
	// Low (the default): CPU nice 10, I/O best-effort class at its lowest
	// level (7).
	Low Priority = "low"
	// Idle: CPU nice 19, I/O idle class: the backup gets the disk only
	// when nothing else wants it.
	Idle Priority = "idle"
	// Normal: the agent's own priority, unchanged.
	Normal Priority = "normal"
)

// Default is the priority of a backup that names none.
const Default = Low

// Priorities are the valid values, in the order the docs list them.
var Priorities = []Priority{Low, Idle, Normal}

// Parse reads a priority; "" is Default.
func Parse(s string) (Priority, error) {
	if s == "" {
		return Default, nil
	}
	if p := Priority(s); slices.Contains(Priorities, p) {
		return p, nil
	}
	return "", fmt.Errorf("priority %q is not known: want low, idle or normal", s)
}

// The I/O classes of ioprio_set(2).
const (
	ioClassBE   = 2
	ioClassIdle = 3
	ioClassSh   = 13 // IOPRIO_CLASS_SHIFT

	ioprioWhoProcess = 1 // a thread, by its id
)

// setting is what a priority does to a thread.
type setting struct {
	nice    int
	ioprio  int // 0: unchanged
	ioclass string
}

func (p Priority) setting() setting {
	switch p {
	case Low:
		return setting{nice: 10, ioprio: ioClassBE<<ioClassSh | 7, ioclass: "best-effort 7"}
	case Idle:
		return setting{nice: 19, ioprio: ioClassIdle << ioClassSh, ioclass: "idle"}
	}
	return setting{}
}

type key struct{}

type value struct {
	p   Priority
	log *slog.Logger
}

// With returns a context whose backup work runs at p; log (nil: slog's
// default) hears once if the system refuses to lower a thread.
func With(ctx context.Context, p Priority, log *slog.Logger) context.Context {
	if log == nil {
		log = slog.Default()
	}
	return context.WithValue(ctx, key{}, value{p, log})
}

// From is the priority ctx asks for; Normal when none.
func From(ctx context.Context) Priority {
	if v, ok := ctx.Value(key{}).(value); ok && v.p != "" {
		return v.p
	}
	return Normal
}

func logger(ctx context.Context) *slog.Logger {
	if v, ok := ctx.Value(key{}).(value); ok {
		return v.log
	}
	return slog.Default()
}

// Lowered reports whether ctx asks for a priority below the agent's own.
func Lowered(ctx context.Context) bool { return From(ctx) != Normal }

// Go runs fn on a new goroutine at ctx's priority. It returns once the
// goroutine's thread is lowered (or found not lowerable), so what fn does
// is at that priority from its first instruction; the caller waits for fn
// itself as it would for any goroutine. At Normal it is a plain go
// statement.
func Go(ctx context.Context, fn func()) {
	p := From(ctx)
	if p == Normal {
		go fn()
		return
	}
	log := logger(ctx)
	ready := make(chan struct{})
	go func() {
		// Never unlocked: the thread ends with this goroutine, and its
		// priority with it.
		runtime.LockOSThread()
		lowerThread(p, log)
		close(ready)
		fn()
	}()
	<-ready
}

// Run runs fn at ctx's priority and waits for it.
func Run(ctx context.Context, fn func()) {
	if !Lowered(ctx) {
		fn()
		return
	}
	done := make(chan struct{})
	Go(ctx, func() {
		defer close(done)
		fn()
	})
	<-done
}

// Start starts cmd at ctx's priority: it forks from a lowered thread, so
// the child and every process it starts inherit the priority. That thread
// ends right after, so cmd must not ask for Pdeathsig (sent when the
// thread that forked it ends); see Go for a child that outlives it.
func Start(ctx context.Context, cmd *exec.Cmd) error {
	var err error
	Run(ctx, func() { err = cmd.Start() })
	return err
}

// lowerThread sets the calling thread's niceness and I/O priority. A
// refusal (a seccomp profile, an unusual kernel) is logged once and the
// work goes on at the thread's priority: a backup never fails for it.
func lowerThread(p Priority, log *slog.Logger) {
	s := p.setting()
	tid := unix.Gettid()
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, s.nice); err != nil {
		warnOnce(&niceWarn, log, "the backup runs at normal CPU priority: setpriority was refused", "priority", p, "nice", s.nice, "error", err)
	}
	if s.ioprio == 0 {
		return
	}
	if _, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), uintptr(s.ioprio)); e != 0 {
		err := error(e)
		warnOnce(&ioWarn, log, "the backup runs at normal I/O priority: ioprio_set was refused", "priority", p, "class", s.ioclass, "error", err)
	}
}

var niceWarn, ioWarn sync.Once

func warnOnce(once *sync.Once, log *slog.Logger, msg string, args ...any) {
	once.Do(func() { log.Warn(msg, args...) })
}

// NiceOfStat reads the niceness from a /proc stat line (proc(5): the 19th
// field; the command name before it may hold spaces and parentheses).
func NiceOfStat(stat string) (int, error) {
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:])
	if i < 0 || len(f) < 17 {
		return 0, fmt.Errorf("not a /proc stat line: %.40q", stat)
	}
	return strconv.Atoi(f[16])
}

// ThreadNices is the niceness of each thread of this process, by thread id:
// what shows that a backup's work, and only it, runs lowered.
func ThreadNices() (map[int]int, error) {
	dir := "/proc/self/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[int]int{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if errors.Is(err, os.ErrNotExist) {
			continue // ended meanwhile
		}
		if err != nil {
			return nil, err
		}
		tid, _ := strconv.Atoi(e.Name())
		if out[tid], err = NiceOfStat(string(b)); err != nil {
			return nil, err
		}
	}
	return out, nil
}
