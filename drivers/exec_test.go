package drivers

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/internal/prio"
)

func sh(script string) Command {
	return Command{Path: "/bin/sh", Args: []string{"-c", script}}
}

func TestCommandOutput(t *testing.T) {
	var out bytes.Buffer
	if err := sh("printf hello").Run(context.Background(), nil, &out); err != nil || out.String() != "hello" {
		t.Fatalf("out=%q err=%v", out.String(), err)
	}
}

func TestCommandFailureCarriesStderr(t *testing.T) {
	var out bytes.Buffer
	err := sh("printf partial; echo 'pg_dump: error: boom' >&2; exit 1").Run(context.Background(), nil, &out)
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("err = %v", err)
	}
}

func TestCommandKilledBySignalIsAnError(t *testing.T) {
	err := sh("kill -9 $$").Run(context.Background(), nil, io.Discard)
	if err == nil {
		t.Fatal("a killed dump looked like a success")
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("storage is gone")
	}
	return len(p), nil
}

func TestCommandStopsWhenOutputFails(t *testing.T) {
	start := time.Now()
	err := sh("yes").Run(context.Background(), nil, &failWriter{n: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "storage is gone") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("the tool was not stopped")
	}
}

type errAfter struct {
	r   io.Reader
	err error
}

func (e *errAfter) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

func TestCommandInputErrorStopsTheTool(t *testing.T) {
	// The tool would succeed at EOF; an input error must kill it first.
	in := &errAfter{r: strings.NewReader(strings.Repeat("x", 100000)), err: errors.New("checksum mismatch")}
	err := sh("cat >/dev/null; exit 0").Run(context.Background(), in, nil)
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("err = %v", err)
	}
}

func TestCommandCanceled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := sh("sleep 30").Run(ctx, nil, io.Discard); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestObjectFileName(t *testing.T) {
	for in, want := range map[string]string{
		"app": "app", "we/ird db": "we%2Fird%20db", "..": "%2E.", ".hidden": "%2Ehidden", "ü": "%C3%BC", "a.b-c_d": "a.b-c_d",
	} {
		if got := ObjectFileName(in); got != want {
			t.Errorf("ObjectFileName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDatabases(t *testing.T) {
	if got := ParseDatabases("all"); got != nil {
		t.Errorf("all: %v", got)
	}
	if got := strings.Join(ParseDatabases(" a, b ,,c"), "|"); got != "a|b|c" {
		t.Errorf("list: %v", got)
	}
}

// TestCommandRunsAtThePriority: a tool, and what it starts in turn, runs at
// the CPU and I/O priority the context asks for (remora.dev/priority); the
// sh is the tool, the cat its helper.
func TestCommandRunsAtThePriority(t *testing.T) {
	for _, c := range []struct {
		p          prio.Priority
		nice       string
		ioprioPart string
	}{
		{prio.Low, "10", "best-effort: prio 7"},
		{prio.Idle, "19", "idle"},
	} {
		t.Run(string(c.p), func(t *testing.T) {
			if _, err := exec.LookPath("ionice"); err != nil {
				t.Skip("no ionice to read a process's I/O class with")
			}
			ctx := prio.With(context.Background(), c.p, nil)
			out, err := sh("cat /proc/self/stat; ionice -p $$").Output(ctx)
			if err != nil {
				t.Fatal(err)
			}
			stat, io, _ := strings.Cut(out, "\n")
			if nice, err := prio.NiceOfStat(stat); err != nil || strconv.Itoa(nice) != c.nice {
				t.Errorf("nice %d (%v), want %s", nice, err, c.nice)
			}
			if !strings.Contains(io, c.ioprioPart) {
				t.Errorf("I/O priority %q, want %q", io, c.ioprioPart)
			}
		})
	}
}
