package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SFTP is a running OpenSSH server that lets one test user in, by password
// or key, to SFTP only.
type SFTP struct {
	Addr       string // 127.0.0.1:port
	User       string
	Password   string // holds the canary
	Key        []byte // the user's private key (PEM), authorized on the server
	KeyFile    string // the same, in a file
	KnownHosts string // a known_hosts file with the server's host key
	HostKey    ssh.PublicKey
	Home       string // the user's home directory, which the user owns
	Dir        string // the server's temp dir, which holds Home
	p          *proc
}

// StartSFTP starts sshd (Debian's openssh-server, found through
// REMORA_SSHD, /usr/sbin/sshd or PATH) with a throwaway host key on a random
// loopback port, for a system user made for the test and removed after it.
// It needs root, for useradd.
func StartSFTP(t testing.TB) *SFTP {
	t.Helper()
	bin := lookPath("REMORA_SSHD", "sshd")
	if bin == "" {
		Missing(t, "sshd (the SFTP test server)", "apt-get install openssh-server (hack/install-deps.sh)")
	}
	if os.Geteuid() != 0 {
		Missing(t, "root (to add the SFTP test user)", "run the SFTP tests as root")
	}
	dir, err := os.MkdirTemp("", "rsftp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// sshd switches to the user, who must reach its home and keys.
	sftpMust(t, os.Chmod(dir, 0o755))
	sftpMust(t, os.MkdirAll("/run/sshd", 0o755)) // sshd's privilege separation directory
	s := &SFTP{Dir: dir, Home: filepath.Join(dir, "home"), Password: "sftp-" + Canary,
		User: "rsftp" + strings.ToLower(rand.Text()[:8])}
	s.writeKeys(t)
	s.addUser(t)
	var lastErr error
	for try := 0; try < 3; try++ {
		port := FreePort(t)
		s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		conf := filepath.Join(dir, fmt.Sprintf("sshd_config-%d", try))
		sftpMust(t, os.WriteFile(conf, []byte(s.config(port)), 0o644))
		cmd := exec.Command(bin, "-D", "-e", "-f", conf)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		s.p = start(t, cmd, filepath.Join(dir, fmt.Sprintf("sshd-%d.log", try)))
		lastErr = s.p.waitReady(func() error {
			c, err := net.DialTimeout("tcp", s.Addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if lastErr == nil {
			sftpMust(t, os.WriteFile(s.KnownHosts, []byte(knownhosts.Line([]string{s.Addr}, s.HostKey)+"\n"), 0o644))
			t.Cleanup(func() { s.p.stop(syscall.SIGTERM) })
			return s
		}
		s.p.stop(syscall.SIGKILL)
	}
	t.Fatalf("sshd: %v", lastErr)
	return nil
}

func sftpMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// SFTPKey makes an ed25519 key pair: the private key in PEM, and the
// public key.
func SFTPKey(t testing.TB) ([]byte, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	sftpMust(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	sftpMust(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	sftpMust(t, err)
	return pem.EncodeToMemory(block), signer.PublicKey()
}

// writeKeys writes the host key (0600: sshd ignores another mode) and the
// user's key and its authorized_keys line.
func (s *SFTP) writeKeys(t testing.TB) {
	hostKey, hostPub := SFTPKey(t)
	s.HostKey = hostPub
	sftpMust(t, os.WriteFile(filepath.Join(s.Dir, "host_key"), hostKey, 0o600))
	var pub ssh.PublicKey
	s.Key, pub = SFTPKey(t)
	s.KeyFile = filepath.Join(s.Dir, "client_key")
	sftpMust(t, os.WriteFile(s.KeyFile, s.Key, 0o600))
	sftpMust(t, os.WriteFile(filepath.Join(s.Dir, "authorized_keys"), ssh.MarshalAuthorizedKey(pub), 0o644))
	s.KnownHosts = filepath.Join(s.Dir, "known_hosts")
}

// addUser adds the system user with its password, and its home; the user
// is removed when the test ends, after the server has stopped.
func (s *SFTP) addUser(t testing.TB) {
	out, err := exec.Command("useradd", "--system", "-M", "-d", s.Home, "-s", "/usr/sbin/nologin", s.User).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v: %s", s.User, err, out)
	}
	t.Cleanup(func() {
		// -f: the sessions of connections the test left open outlive sshd
		// until the test process exits, and plain userdel refuses a user
		// with processes.
		if out, err := exec.Command("userdel", "-f", s.User).CombinedOutput(); err != nil {
			t.Logf("userdel %s: %v: %s", s.User, err, out)
		}
	})
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(s.User + ":" + s.Password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v: %s", err, out)
	}
	sftpMust(t, os.Mkdir(s.Home, 0o755))
	sftpMust(t, exec.Command("chown", s.User+":", s.Home).Run())
}

// config is sshd_config: only the test user, to SFTP only. StrictModes is
// off because the keys live under /tmp.
func (s *SFTP) config(port int) string {
	return fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
AllowUsers %s
Subsystem sftp internal-sftp
Match User %s
  ForceCommand internal-sftp
`, port, filepath.Join(s.Dir, "host_key"), filepath.Join(s.Dir, fmt.Sprintf("sshd-%d.pid", port)),
		filepath.Join(s.Dir, "authorized_keys"), s.User, s.User)
}

// URL is the Remora storage URL for a path on this server.
func (s *SFTP) URL(path string) string { return "sftp://" + s.User + "@" + s.Addr + path }

// Env is the environment that gives Remora the password and the known host.
func (s *SFTP) Env() []string {
	return []string{"REMORA_SFTP_PASSWORD=" + s.Password, "REMORA_SFTP_KNOWN_HOSTS_FILE=" + s.KnownHosts}
}

// SetEnv sets Env in this process for the test's duration, and unsets the
// other SFTP variables.
func (s *SFTP) SetEnv(t *testing.T) {
	for _, v := range []string{"REMORA_SFTP_KEY", "REMORA_SFTP_KEY_FILE", "REMORA_SFTP_KNOWN_HOSTS"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}
