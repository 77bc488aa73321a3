package drivers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"remora.dev/remora/internal/prio"
)

// A restore drill loads a backup into a throwaway server and compares what
// it finds with what the dump recorded. A dump records its checks in its
// object's Meta under CheckPrefix ("check.rows.public.orders": "1200"); a
// driver's Observer reads the same keys back from the restored server.

// CheckPrefix begins the Meta keys a drill compares.
const CheckPrefix = "check."

// MetaChecksOmitted says how many checks a dump left out to keep its
// manifest bounded (MaxChecks), e.g. "4800 of 5000 tables".
const MetaChecksOmitted = "checks_omitted"

// MaxChecks bounds the checks one object records: a database of 50,000
// tables would otherwise make a manifest of megabytes. Drivers record the
// largest tables (most data) first.
const MaxChecks = 200

// A want is a number ("1200"), a range of numbers ("1190..1210") when the
// dump could only bracket the value, or any other string compared exactly.

// CheckRange writes the want of a value read as lo before a dump and hi
// after it.
func CheckRange(lo, hi int64) string {
	if lo == hi {
		return strconv.FormatInt(lo, 10)
	}
	return strconv.FormatInt(min(lo, hi), 10) + ".." + strconv.FormatInt(max(lo, hi), 10)
}

// CheckMatches reports whether got satisfies want.
func CheckMatches(want, got string) bool {
	lo, hi, ok := strings.Cut(want, "..")
	if !ok {
		return want == got
	}
	l, err1 := strconv.ParseInt(lo, 10, 64)
	h, err2 := strconv.ParseInt(hi, 10, 64)
	g, err3 := strconv.ParseInt(got, 10, 64)
	return err1 == nil && err2 == nil && err3 == nil && l <= g && g <= h
}

// Observer is a driver that reads back, from the server it restored into,
// the checks its dump recorded: the same CheckPrefix keys, with what it
// found. A key it cannot find (a table that is not there) is left out.
type Observer interface {
	Observe(ctx context.Context, obj Object, opts RestoreOptions) (map[string]string, error)
}

// Scratch is a throwaway server a drill restores into, or a directory for
// files.
type Scratch struct {
	DSN  string // the driver's DSN for it; empty for files
	Into string // RestoreOptions.Into (a directory, for files)
	// Stop stops the server and waits for it; the drill removes the
	// directory afterwards.
	Stop func()
}

// ScratchOptions say where a throwaway server lives.
type ScratchOptions struct {
	// Dir is an empty directory, removed by the caller, that holds the
	// server's data and its unix socket.
	Dir string
	// DataDir, for a physical backup, is the data directory the backup was
	// restored into: the server starts on it instead of a new one.
	DataDir string
	// User is the database user the DSN given to the drill names: a
	// physical backup's server knows only its own roles.
	User string
	// Meta is the restored object's, for a physical backup (its server's
	// version picks the server programs).
	Meta map[string]string
}

// ScratchFunc starts an empty server of a driver's kind.
type ScratchFunc func(ctx context.Context, o ScratchOptions) (*Scratch, error)

var (
	scratchMu sync.Mutex
	scratches = map[string]ScratchFunc{}
)

// RegisterScratch says how to start a throwaway server for the named driver.
func RegisterScratch(name string, f ScratchFunc) {
	scratchMu.Lock()
	defer scratchMu.Unlock()
	scratches[name] = f
}

// StartScratch starts a throwaway server for the named driver.
func StartScratch(ctx context.Context, name string, o ScratchOptions) (*Scratch, error) {
	scratchMu.Lock()
	f := scratches[name]
	scratchMu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("the %s driver cannot start a throwaway server for a drill", name)
	}
	return f(ctx, o)
}

// Server is a long-running child process: a throwaway server.
type Server struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartServer starts a server in its own process group, at the priority
// ctx asks for (prio.With), writing its output to logFile. It is killed if
// Remora dies first.
func StartServer(ctx context.Context, path string, args, env []string, cred *syscall.Credential, logFile string) (*Server, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = withoutNever(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if cred != nil {
			_ = f.Chown(int(cred.Uid), int(cred.Gid))
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	s := &Server{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	// Started and waited for on one goroutine, whose thread (lowered, at a
	// low priority, and ended with it) lives as long as the server: the
	// kernel sends Pdeathsig when the thread that forked the child ends.
	prio.Go(ctx, func() {
		err := cmd.Start()
		started <- err
		if err == nil {
			s.err = cmd.Wait()
			close(s.done)
		}
	})
	if err := <-started; err != nil {
		return nil, err
	}
	return s, nil
}

// Exited reports, without waiting, whether the server has ended, and how.
func (s *Server) Exited() (bool, error) {
	select {
	case <-s.done:
		return true, s.err
	default:
		return false, nil
	}
}

// Stop asks the server's process group to stop (sig), waits up to grace,
// then kills it.
func (s *Server) Stop(sig syscall.Signal, grace time.Duration) {
	_ = syscall.Kill(-s.cmd.Process.Pid, sig)
	select {
	case <-s.done:
	case <-time.After(grace):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) // helpers it left behind
}

// WaitReady polls ready until it succeeds, the server exits, ctx ends or
// limit passes; it returns the last error.
func (s *Server) WaitReady(ctx context.Context, limit time.Duration, ready func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if exited, werr := s.Exited(); exited {
			return fmt.Errorf("the server exited (%v) before it was ready: %w", werr, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ErrNoServer is returned by a ScratchFunc whose server programs are not
// installed.
var ErrNoServer = errors.New("the server programs a drill needs are not installed")
