// Package testenv starts real servers for tests: PostgreSQL and an
// S3-compatible server (versitygw), each a throwaway child process in a temp
// directory on a random loopback port or a unix socket.
//
// When a server's binary is missing the test is skipped, except under CI=true,
// where it fails with a message saying how to install it.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Canary is the password and secret key every test server uses. Tests scan
// output for it: it must never appear in anything Remora prints or stores.
const Canary = "Canary-s3cr3t-9f4b2e"

// Missing stops a test whose server binary is absent: a failure under CI=true,
// a skip elsewhere.
func Missing(t testing.TB, what, how string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (required under CI=true): %s", what, how)
	}
	t.Skipf("%s not found: %s", what, how)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RepoRoot is the directory holding the module's go.mod.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.HasPrefix(string(b), "module remora.dev/remora\n") {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// proc is a started server process.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs cmd in its own process group, its output going to logFile.
func start(t testing.TB, cmd *exec.Cmd, logFile string) *proc {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p := &proc{cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to 10 s, then kills the process group.
func (p *proc) stop(sig syscall.Signal) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// logTail is the end of the server's log, for failure messages.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitReady polls ready until it returns nil, the process dies or 30 s pass.
func (p *proc) waitReady(ready func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("server exited (%v) before it was ready:\n%s", p.err, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready after 30s (%v):\n%s", err, p.logTail())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// lookPath finds a binary by the environment variable env, then the repo's
// bin/ directory, then PATH, then /usr/sbin.
func lookPath(env, name string) string {
	if p := os.Getenv(env); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	if p := filepath.Join(RepoRoot(), "bin", name); isExec(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// Debian's daemons live in /usr/sbin, which a user's PATH may lack.
	if p := filepath.Join("/usr/sbin", name); isExec(p) {
		return p
	}
	return ""
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func itoa(n int) string { return strconv.Itoa(n) }

// runSQL feeds sql to a client program and returns its output, trimmed, or
// an error with what it wrote to stderr.
func runSQL(cmd *exec.Cmd, sql string) (string, error) {
	cmd.Stdin = strings.NewReader(sql)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}
