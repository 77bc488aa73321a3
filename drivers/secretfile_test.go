package drivers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// lineWriter keeps what is written to it and calls f once it holds a line
// equal to last.
type lineWriter struct {
	strings.Builder
	last string
	f    func()
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.Builder.Write(p)
	if w.f != nil && slices.Contains(strings.Split(w.String(), "\n"), w.last) {
		w.f()
		w.f = nil
	}
	return len(p), nil
}

// TestSecretFileLifetime: the tool reads the secret from a file, mode 0600 in
// a directory of 0700, named by a variable; the file and its directory are
// gone once Run returns, whether the tool succeeded, failed or was canceled.
func TestSecretFileLifetime(t *testing.T) {
	// The tool prints the modes, the path and the secret, then ends as the
	// case says.
	const show = `stat -c '%a' "$SECRET" "${SECRET%/*}"; echo "$SECRET"; cat "$SECRET"; `
	for _, tc := range []struct {
		name, end string
		cancel    bool
		wantErr   func(error) bool
	}{
		{"success", "exit 0", false, func(err error) bool { return err == nil }},
		{"failure", "exit 3", false, func(err error) bool { var te *ToolError; return errors.As(err, &te) }},
		{"canceled", "exec sleep 600", true, func(err error) bool { return errors.Is(err, context.Canceled) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SECRET", "/elsewhere") // replaced, not doubled
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cmd := sh(show + tc.end)
			cmd.Env = ToolEnv([]string{"SECRET"})
			cmd.Secret = &SecretFile{Content: "pass word\n", Env: "SECRET"}
			w := &lineWriter{last: "pass word"}
			if tc.cancel {
				w.f = cancel // once the tool has read the file
			}
			if err := cmd.Run(ctx, nil, w); !tc.wantErr(err) {
				t.Fatalf("err = %v", err)
			}
			out := w.String()
			lines := strings.Split(out, "\n")
			if len(lines) < 4 || lines[0] != "600" || lines[1] != "700" || lines[3] != "pass word" {
				t.Fatalf("the tool saw %q, want modes 600 and 700, the path and the secret", out)
			}
			path := lines[2]
			if !strings.HasPrefix(path, os.TempDir()) {
				t.Errorf("the file %s is not in the temporary directory", path)
			}
			for _, p := range []string{path, filepath.Dir(path)} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("%s is left after Run (%v)", p, err)
				}
			}
		})
	}
}

// TestSecretFileArg: a file given by an option comes first, before the
// command's own arguments, and the environment does not name it.
func TestSecretFileArg(t *testing.T) {
	cmd := Command{Path: "/bin/echo", Args: []string{"a", "b"}, Secret: &SecretFile{Content: "x", Arg: "--defaults-file="}}
	out, err := cmd.Output(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) != 3 || !strings.HasPrefix(f[0], "--defaults-file="+os.TempDir()) || !slices.Equal(f[1:], []string{"a", "b"}) {
		t.Errorf("arguments %q, want --defaults-file=<path> a b", f)
	}
	if !slices.Equal(cmd.Args, []string{"a", "b"}) {
		t.Errorf("Run changed the command's arguments: %q", cmd.Args)
	}
}

// TestSecretFileErrors: a secret that cannot be written stops the command
// before it starts, and the message does not quote it.
func TestSecretFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, content, tmp, want string
	}{
		{"no temporary directory", "s3cret", "/nonexistent/tmp", "password file"},
		{"NUL byte", "s3cret\x00", "", "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := filepath.Join(t.TempDir(), "ran")
			if tc.tmp != "" {
				t.Setenv("TMPDIR", tc.tmp)
			}
			cmd := sh("touch " + ran)
			cmd.Secret = &SecretFile{Content: tc.content, Env: "SECRET"}
			err := cmd.Run(context.Background(), nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("err = %v, want one about the %s that does not quote the secret", err, tc.want)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Error("the command ran")
			}
		})
	}
}

// TestSecretFileOtherUser: a tool that runs as another user (Remora as root)
// can read its file, and the file is still gone afterwards.
func TestSecretFileOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a tool as another user")
	}
	cmd := sh(`id -u; cat "$SECRET"`)
	cmd.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	cmd.Secret = &SecretFile{Content: "pw", Env: "SECRET"}
	out, err := cmd.Output(context.Background())
	if err != nil || out != "65534\npw" {
		t.Fatalf("the tool as user 65534: %q, %v", out, err)
	}
	left, _ := filepath.Glob(filepath.Join(os.TempDir(), "remora-secret-*"))
	for _, p := range left {
		if fi, err := os.Stat(p); err == nil && fi.Sys().(*syscall.Stat_t).Uid == 65534 {
			t.Errorf("%s is left", p)
		}
	}
}
