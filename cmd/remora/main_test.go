package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
)

// remoraBin is the remora binary the end-to-end tests run, built once (with
// the race detector when the tests have it).
var remoraBin string

// TestMain builds the binary once. Tests that start their own servers and
// assert no timing run in parallel (t.Parallel); those that hold a deadline
// (the agent's 2 s reaction to a new annotation, stopping within seconds, the
// webhook's certificate rotation) or measure a run to time their kills stay
// sequential, so the load of the others cannot make them flaky.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "remora-bin")
	if err != nil {
		panic(err)
	}
	remoraBin = filepath.Join(dir, "remora")
	args := []string{"build", "-o", remoraBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build remora: %v\n%s", err, out)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	testenv.Main(m)
}

// result is what one remora command did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// remora runs the binary with env added to the test's environment. Every
// output is checked for the canary secret.
func remora(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(remoraBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run remora: %v", err)
	}
	noCanary(t, "remora "+strings.Join(args, " "), r.stdout+r.stderr)
	return r
}

// mustRemora runs remora and fails the test unless it exits 0.
func mustRemora(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := remora(t, env, args...)
	if r.code != 0 {
		t.Fatalf("remora %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// noCanary fails the test if the canary secret shows in s.
func noCanary(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, testenv.Canary) {
		t.Errorf("%s printed the secret:\n%s", what, s)
	}
}

// pgEnv is the environment for backups of pg to storage, as shop/db-0.
func pgEnv(pg *testenv.Postgres, storage string, extra ...string) []string {
	return append([]string{"REMORA_STORAGE=" + storage, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0"}, extra...)
}

// filesUnder lists the regular files below dir.
func filesUnder(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// writing reports whether a temporary file whose name holds part and that
// is larger than size is being written below dir.
func writing(dir, part string, size int64) bool {
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
