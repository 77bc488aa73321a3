package drivers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// SecretFile is a secret (a password) a tool reads from a file. Not from its
// environment: another process of the same user reads it in
// /proc/PID/environ, and a core dump or a crash report of the tool carries
// it. Not from its arguments either, which ps shows to everyone.
//
// Command.Run writes Content, mode 0600, in a directory of its own (0700)
// made for that one command, and removes both when the command ends, however
// it ends (an error, a cancellation). Only a SIGKILL of Remora itself leaves
// them behind, in the temporary directory.
type SecretFile struct {
	Content string
	// Arg, if set, is the option that takes the file's path (as in
	// "--defaults-file="): the option, with the path, comes before every
	// other argument.
	Arg string
	// Env, if set, is the variable that holds the file's path (PGPASSFILE).
	Env string
}

// errNUL: a secret file is read as text, where a NUL byte ends it.
var errNUL = errors.New("the password holds a NUL byte, which no tool can read")

// write makes the directory and the file, owned by cred's user when the tool
// runs as another user, and returns the file's path and what removes them.
func (s *SecretFile) write(cred *syscall.Credential) (string, func(), error) {
	if strings.IndexByte(s.Content, 0) >= 0 {
		return "", nil, errNUL
	}
	dir, err := os.MkdirTemp("", "remora-secret-") // 0700
	if err != nil {
		return "", nil, fmt.Errorf("password file: %w", err)
	}
	remove := func() { _ = os.RemoveAll(dir) }
	path := filepath.Join(dir, "password")
	if err := writeSecret(path, s.Content, cred); err != nil {
		remove()
		return "", nil, fmt.Errorf("password file: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			remove()
			return "", nil, fmt.Errorf("password file: %w", err)
		}
	}
	return path, remove, nil
}

// writeSecret creates path, mode 0600 whatever the umask, and writes content.
func writeSecret(path, content string, cred *syscall.Credential) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if err == nil && cred != nil {
		err = f.Chown(int(cred.Uid), int(cred.Gid))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// place gives the file at path to the tool: its option first in args, its
// variable in env (replacing one of the same name). It returns new slices.
func (s *SecretFile) place(path string, args, env []string) ([]string, []string) {
	if s.Arg != "" {
		args = append([]string{s.Arg + path}, args...)
	}
	if s.Env != "" {
		if env == nil {
			env = ToolEnv(nil)
		}
		env = slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, s.Env+"=") })
		env = append(env, s.Env+"="+path)
	}
	return args, env
}
