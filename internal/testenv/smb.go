package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SMB is a running Samba server (smbd) with two shares: Share, writable,
// whose files are in Dir, and ReadOnly, which the user may read but not
// write. The user is root, in the server's own password database: Samba
// then needs no Unix account made for the test.
type SMB struct {
	Addr        string // host:port
	User        string
	Password    string
	Share       string // a writable share
	ReadOnly    string // a share the user may not write to
	Dir         string // the directory Share serves
	ReadOnlyDir string // the directory ReadOnly serves
	p           *proc
}

// StartSMB starts smbd from Debian's samba package, in a temp dir with its
// own smb.conf and password database. It must run as root (smbd switches to
// the logged-in user).
func StartSMB(t testing.TB) *SMB {
	t.Helper()
	bin := lookPath("REMORA_SMBD", "smbd")
	pw := lookPath("REMORA_SMBPASSWD", "smbpasswd")
	if bin == "" || pw == "" {
		Missing(t, "smbd and smbpasswd (the SMB test server)", "apt-get install samba (hack/install-deps.sh)")
	}
	if os.Geteuid() != 0 {
		Missing(t, "root (smbd runs as root)", "run the SMB tests as root")
	}
	dir, err := os.MkdirTemp("", "rsmb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &SMB{User: "root", Password: Canary, Share: "backup", ReadOnly: "ro", Dir: filepath.Join(dir, "share"), ReadOnlyDir: filepath.Join(dir, "ro")}
	var lastErr error
	for try := 0; try < 3; try++ {
		port := FreePort(t)
		conf := s.writeConf(t, dir, port)
		if try == 0 {
			cmd := exec.Command(pw, "-c", conf, "-a", "-s", s.User)
			cmd.Stdin = strings.NewReader(s.Password + "\n" + s.Password + "\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("smbpasswd: %v\n%s", err, out)
			}
		}
		s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		// start puts smbd in a process group of its own, so it must not
		// try to make one (setsid fails in a group leader): hence
		// --no-process-group. With that flag smbd signals its whole group
		// when it stops, which is then only itself and its helpers, never
		// the test binary.
		cmd := exec.Command(bin, "--foreground", "--no-process-group", "--debug-stdout", "-s", conf)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		s.p = start(t, cmd, filepath.Join(dir, fmt.Sprintf("smbd-%d.log", try)))
		lastErr = s.p.waitReady(func() error {
			c, err := net.DialTimeout("tcp", s.Addr, time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if lastErr == nil {
			t.Cleanup(func() { s.p.stop(syscall.SIGTERM) })
			return s
		}
		s.p.stop(syscall.SIGKILL)
	}
	t.Fatalf("smbd: %v", lastErr)
	return nil
}

// writeConf makes the server's directories and writes its smb.conf.
func (s *SMB) writeConf(t testing.TB, dir string, port int) string {
	t.Helper()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"lock", "state", "cache", "private", "run", "log", "share", "ro", "ncalrpc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`[global]
  server role = standalone server
  smb ports = %[2]d
  interfaces = 127.0.0.1
  bind interfaces only = yes
  disable netbios = yes
  lock directory = %[1]s/lock
  state directory = %[1]s/state
  cache directory = %[1]s/cache
  private dir = %[1]s/private
  pid directory = %[1]s/run
  ncalrpc dir = %[1]s/ncalrpc
  log file = %[1]s/log/log.%%m
  passdb backend = tdbsam:%[1]s/private/passdb.tdb
  server min protocol = SMB2_10
  load printers = no
  printcap name = /dev/null
  disable spoolss = yes
  rpc start on demand helpers = no
[%[3]s]
  path = %[1]s/share
  read only = no
  valid users = %[5]s
[%[4]s]
  path = %[1]s/ro
  read only = yes
  valid users = %[5]s
`, dir, port, s.Share, s.ReadOnly, s.User)
	p := filepath.Join(dir, "smb.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// URL is the Remora storage URL for path (slash-separated, below the
// share's root; "" for the root) in share on this server.
func (s *SMB) URL(share, path string) string {
	u := fmt.Sprintf("smb://%s@%s/%s", s.User, s.Addr, share)
	if path != "" {
		u += "/" + path
	}
	return u
}

// Env is the environment that gives Remora the password.
func (s *SMB) Env() []string { return []string{"REMORA_SMB_PASSWORD=" + s.Password} }

// SetEnv sets the password in this process's environment for the test's
// duration.
func (s *SMB) SetEnv(t *testing.T) { t.Setenv("REMORA_SMB_PASSWORD", s.Password) }
