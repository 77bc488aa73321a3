package testenv

import (
	"remora.dev/remora/sidecar"

	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Remora is the remora binary, built once per test package by BuildRemora,
// that the end-to-end tests run as a user or a pod would.
type Remora struct {
	Bin string
}

// RaceUninstrumented are the packages that BuildRemora compiles without the
// race detector's instrumentation in a race build: the third-party
// compressors, pure Go that the detector slows about twentyfold (a 96 MiB
// database took 64 s to back up instead of 5), which would make every test
// that moves real data crawl. Remora's own code, and its use of them, stays
// instrumented; the compressors' internals are tested upstream, and with the
// race detector by repo's own tests, which link them instrumented.
const RaceUninstrumented = "github.com/klauspost/..."

// BuildRemora builds remora.dev/remora/cmd/remora, with the race detector
// when the tests have it (see RaceUninstrumented), into a temp directory that
// Main removes when the run ends. Use it in TestMain, before Main:
//
//	var remora *testenv.Remora
//
//	func TestMain(m *testing.M) {
//		remora = testenv.BuildRemora()
//		testenv.Main(m)
//	}
//
// A failed build ends the test binary with its output.
func BuildRemora() *Remora {
	dir, err := os.MkdirTemp("", "remora-bin")
	if err != nil {
		fmt.Fprintf(os.Stderr, "build remora: %v\n", err)
		os.Exit(1)
	}
	bin := filepath.Join(dir, "remora")
	args := []string{"build", "-o", bin}
	if Race {
		args = append(args, "-race", "-gcflags="+RaceUninstrumented+"=-race=false")
	}
	cmd := exec.Command("go", append(args, "remora.dev/remora/cmd/remora")...)
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "build remora: %v\n%s", err, out)
		os.Exit(1)
	}
	keepTemplate(dir) // Main removes it, after the tests and before os.Exit
	return &Remora{Bin: bin}
}

// Result is what one remora command did.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// Command prepares remora with env added to the test's environment.
func (r *Remora) Command(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(r.Bin, args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// Run runs remora with env added to the test's environment and waits for it.
// Its output is checked for the canary secret.
func (r *Remora) Run(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	cmd := r.Command(env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run remora: %v", err)
	}
	NoCanary(t, "remora "+strings.Join(args, " "), res.Stdout+res.Stderr)
	return res
}

// Must is Run, failing the test unless remora exits 0.
func (r *Remora) Must(t testing.TB, env []string, args ...string) Result {
	t.Helper()
	res := r.Run(t, env, args...)
	if res.Code != 0 {
		t.Fatalf("remora %s: %s", strings.Join(args, " "), res)
	}
	return res
}

// Process is a long-running remora (the agent, the webhook) started by a
// test. Its output is kept, and checked for the canary when the test ends.
type Process struct {
	Cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

// Start starts remora with env in the background. It is killed, if still
// running, when the test ends.
func (r *Remora) Start(t testing.TB, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{Cmd: r.Command(env, args...), logs: &syncBuffer{}, done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = p.logs, p.logs
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		NoCanary(t, "remora "+strings.Join(args, " ")+" logs", p.logs.String())
	})
	return p
}

// Logs is everything the process printed so far.
func (p *Process) Logs() string { return p.logs.String() }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends sig unless the process has exited, and waits up to limit for
// it to exit. It reports whether the process exited in time, and its exit
// error (nil for exit 0).
func (p *Process) Stop(sig os.Signal, limit time.Duration) (exited bool, err error) {
	if !p.Exited() {
		p.Cmd.Process.Signal(sig)
	}
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(limit):
		return false, nil
	}
}

// Kill kills the process unless it has exited, and waits for it.
func (p *Process) Kill() {
	if !p.Exited() {
		p.Cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// WaitLog waits up to limit for the process to print a line holding s, and
// fails the test if it does not, or exits first.
func (p *Process) WaitLog(t testing.TB, s string, limit time.Duration) string {
	t.Helper()
	line, err := p.logs.waitLine(s, limit, p.done)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, p.logs)
	}
	return line
}

// syncBuffer is a buffer safe to write from a process's output copier while
// the test reads it, and that tells waiters when it grows.
type syncBuffer struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{} // closed and replaced on every write
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// wait returns the contents and a channel closed on the next write.
func (s *syncBuffer) wait() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.b.String(), s.changed
}

// waitLine waits up to limit for a complete line holding sub and returns it.
// It gives up early when stop is closed (the writer has exited) and the line
// is still missing.
func (s *syncBuffer) waitLine(sub string, limit time.Duration, stop <-chan struct{}) (string, error) {
	deadline := time.After(limit)
	for {
		stopped := false
		select {
		case <-stop: // the writer is done: what is in the buffer is all there is
			stopped = true
		default:
		}
		text, changed := s.wait()
		for _, line := range strings.SplitAfter(text, "\n") {
			if strings.HasSuffix(line, "\n") && strings.Contains(line, sub) {
				return strings.TrimSuffix(line, "\n"), nil
			}
		}
		if stopped {
			return "", fmt.Errorf("the process exited without printing %q", sub)
		}
		select {
		case <-changed:
		case <-stop:
		case <-deadline:
			return "", fmt.Errorf("no line with %q within %s", sub, limit)
		}
	}
}

// NoCanary fails the test if the canary secret shows in s.
func NoCanary(t testing.TB, what, s string) {
	t.Helper()
	if strings.Contains(s, Canary) {
		t.Errorf("%s printed the secret:\n%s", what, s)
	}
}

// PgEnv is the environment for backups of pg to storage, as shop/db-0.
func PgEnv(pg *Postgres, storage string, extra ...string) []string {
	return append([]string{"REMORA_STORAGE=" + storage, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0"}, extra...)
}

// FilesUnder lists the regular files below dir.
func FilesUnder(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// Writing reports whether a temporary file whose name holds part and that
// is larger than size is being written below dir.
func Writing(dir, part string, size int64) bool {
	found := false
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), part) {
			if info, err := d.Info(); err == nil && info.Size() > size {
				found = true
			}
		}
		return nil
	})
	return found
}

// WaitFor polls cond every few milliseconds until it holds, and fails the
// test with what when limit passes first.
func WaitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
}

// WriteDownwardAPI writes the annotations as the kubelet does: a new
// timestamped directory, a ..data_tmp symlink to it renamed over ..data, and
// the file itself a symlink through ..data.
func WriteDownwardAPI(t testing.TB, dir string, ann map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, strconv.Quote(ann[k]))
	}
	ts := "..2026_11_24_" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ts, sidecar.AnnotationsName), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, sidecar.AnnotationsName)); err != nil {
		os.Symlink("..data/"+sidecar.AnnotationsName, filepath.Join(dir, sidecar.AnnotationsName))
	}
	if old != "" {
		os.RemoveAll(filepath.Join(dir, old))
	}
}

// SocketDir is a short temp directory for a control socket (a unix socket's
// path is limited to 107 bytes, which t.TempDir can pass), removed when the
// test ends.
func SocketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Scrape reads the Prometheus metrics at addr, checked for the canary.
func Scrape(t testing.TB, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	NoCanary(t, "/metrics", string(b))
	return string(b)
}

// MetricValue is the value of the unlabelled sample name in metrics, or "".
func MetricValue(metrics, name string) string {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}
