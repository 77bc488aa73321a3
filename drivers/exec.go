package drivers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"remora.dev/remora/internal/prio"
)

// Command is a dump or load tool run as a child process.
type Command struct {
	Path string
	Args []string
	// Env is the whole environment of the child, best built with ToolEnv;
	// nil means ToolEnv(nil), never Remora's own environment. Variables no
	// tool may get (neverEnv) are dropped from it.
	Env []string
	// Stderr, if set, also receives everything the tool writes to stderr.
	Stderr io.Writer
	// Credential, if set, is the user the tool runs as (Remora as root
	// starting a server that refuses root).
	Credential *syscall.Credential
	// Secret, if set, is a password the tool reads from a file that lives
	// as long as the command: never its environment or its arguments.
	Secret *SecretFile
}

// Run runs the command with stdin (may be nil) as its input and stdout (may be
// nil) receiving its output. It returns nil only if the command read its
// input to the end without error, its output was all written, and it exited
// with status 0. Otherwise the error names the tool and carries the end of its
// stderr. If writing the output or reading the input fails, the command is
// stopped at once and that failure is returned. A Secret's file is gone when
// Run returns.
func (c Command) Run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	if c.Secret == nil {
		return c.run(ctx, stdin, stdout)
	}
	path, remove, err := c.Secret.write(c.Credential)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name(), err)
	}
	defer remove()
	c.Args, c.Env = c.Secret.place(path, c.Args, c.Env)
	c.Secret = nil
	return c.run(ctx, stdin, stdout)
}

// name is the tool's file name, for messages.
func (c Command) name() string {
	return c.Path[strings.LastIndexByte(c.Path, '/')+1:]
}

func (c Command) run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	name := c.name()
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Env = ToolEnv(nil)
	if c.Env != nil {
		cmd.Env = withoutNever(c.Env)
	}
	// Signals go to the tool's whole process group, helpers included.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: c.Credential} // a Ctrl-C to remora must not reach the tool first
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	if c.Stderr != nil {
		cmd.Stderr = io.MultiWriter(stderr, c.Stderr)
	}

	var out io.ReadCloser
	var in io.WriteCloser
	var err error
	if stdout != nil {
		if out, err = cmd.StdoutPipe(); err != nil {
			return err
		}
	}
	if stdin != nil {
		if in, err = cmd.StdinPipe(); err != nil {
			return err
		}
	}
	// At the backup's priority (remora.dev/priority), which the tool's
	// own helpers inherit.
	if err := prio.Start(ctx, cmd); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	kill := sync.OnceFunc(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	var wg sync.WaitGroup
	var inErr error
	if in != nil {
		feed(ctx, &wg, in, stdin, kill, &inErr)
	}
	var outErr error
	if out != nil {
		widenPipe(out)
		// Large reads: the tool runs ahead while the compressor works.
		buf := make([]byte, pipeSize)
		if _, outErr = io.CopyBuffer(stdout, struct{ io.Reader }{out}, buf); outErr != nil {
			kill()
		}
	}
	wg.Wait()
	waitErr := cmd.Wait()
	switch {
	case inErr != nil:
		return inErr
	case outErr != nil:
		return outErr
	case ctx.Err() != nil:
		return ctx.Err()
	case waitErr != nil:
		return &ToolError{Tool: name, Err: waitErr, Stderr: strings.TrimSpace(stderr.String())}
	}
	return nil
}

// feed copies stdin into the tool on a goroutine of wg, setting *errp to
// the copy's failure. Reading stdin runs what feeds it (a restore's
// decryption and decompression): at the priority of the run too.
func feed(ctx context.Context, wg *sync.WaitGroup, in io.WriteCloser, stdin io.Reader, kill func(), errp *error) {
	wg.Add(1)
	prio.Go(ctx, func() {
		defer wg.Done()
		_, err := io.Copy(in, stdin)
		if err != nil && !errors.Is(err, syscall.EPIPE) {
			// Stop the tool before it sees the end of its input: a
			// truncated input must never be taken as a whole one.
			kill()
			*errp = err
		}
		in.Close()
	})
}

// ToolError is a tool that exited with an error: the exit status and the
// end of what it wrote to stderr, where it says why.
type ToolError struct {
	Tool   string
	Err    error  // from exec: the exit status (nil: the tool reported an error it did not exit with)
	Stderr string // its last 4 KiB
}

func (e *ToolError) Error() string {
	msg := e.Tool
	if e.Err != nil {
		msg += " " + e.Err.Error()
	}
	if e.Stderr != "" {
		msg += ": " + oneLine(e.Stderr)
	}
	return msg
}

func (e *ToolError) Unwrap() error { return e.Err }

// Says reports whether the tool's message holds s: how a driver tells one
// failure of a tool from another.
func (e *ToolError) Says(s string) bool { return strings.Contains(e.Stderr, s) }

// ToolSays reports whether err is a tool's failure whose message holds s.
func ToolSays(err error, s string) bool {
	var te *ToolError
	return errors.As(err, &te) && te.Says(s)
}

// pipeSize is the buffer between a dump tool and Remora: 1 MiB, Linux's
// limit for an unprivileged process, instead of the default 64 KiB.
const pipeSize = 1 << 20

// widenPipe grows the kernel's buffer of the pipe r reads from, if it can.
func widenPipe(r io.Reader) {
	if f, ok := r.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); ok {
		if rc, err := f.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
		}
	}
}

// Output runs the command and returns its standard output.
func (c Command) Output(ctx context.Context) (string, error) {
	var b bytes.Buffer
	err := c.Run(ctx, nil, &b)
	return b.String(), err
}

// oneLine joins the lines of a tool's message.
func oneLine(s string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " | ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
