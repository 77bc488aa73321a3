package testenv

import (
	"crypto/rand"
	"encoding/hex"
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

// FTP is a running vsftpd with one local user, whose home directory is the
// server's "/" (chroot).
type FTP struct {
	Addr     string // 127.0.0.1:port
	User     string
	Password string
	Home     string // the user's "/" on disk
	CAFile   string // the server certificate, for ftps (empty without TLS)
	TLS      bool
}

// StartFTP starts vsftpd from Debian's vsftpd package on a random loopback
// port, serving plain FTP and explicit TLS (AUTH TLS) with a throwaway
// certificate, and insisting that data connections resume the control
// connection's TLS session. The server switches users, so the test must run
// as root; it adds a system user (a login shell: Debian's PAM config for
// vsftpd wants one) and removes it when the test ends.
func StartFTP(t testing.TB) *FTP { t.Helper(); return startFTP(t, true) }

// StartPlainFTP is StartFTP without TLS: AUTH TLS is refused.
func StartPlainFTP(t testing.TB) *FTP { t.Helper(); return startFTP(t, false) }

func startFTP(t testing.TB, withTLS bool) *FTP {
	t.Helper()
	bin := lookPath("REMORA_VSFTPD", "vsftpd")
	if bin == "" {
		Missing(t, "vsftpd (the FTP test server)", "apt-get install vsftpd (hack/install-deps.sh) or set REMORA_VSFTPD")
	}
	if os.Geteuid() != 0 {
		Missing(t, "root (vsftpd switches to a test user)", "run the FTP tests as root")
	}
	dir, err := os.MkdirTemp("", "rftp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &FTP{User: ftpUser(), Password: Canary, Home: filepath.Join(dir, "home"), TLS: withTLS}
	ftpSetup(t, dir, f)
	var lastErr error
	for try := 0; try < 3; try++ {
		port, pasv := FreePort(t), FreePort(t)
		f.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		conf := filepath.Join(dir, fmt.Sprintf("vsftpd-%d.conf", try))
		if err := os.WriteFile(conf, []byte(ftpConfig(dir, port, pasv, withTLS)), 0o600); err != nil {
			t.Fatal(err)
		}
		p := start(t, exec.Command(bin, conf), filepath.Join(dir, fmt.Sprintf("vsftpd-%d.out", try)))
		lastErr = p.waitReady(func() error {
			c, err := net.DialTimeout("tcp", f.Addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if lastErr == nil {
			t.Cleanup(func() { ftpStop(p); ftpUserDel(f.User) })
			return f
		}
		ftpStop(p)
	}
	ftpUserDel(f.User)
	t.Fatalf("vsftpd: %v", lastErr)
	return nil
}

// ftpUser is a fresh user name.
func ftpUser() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "rftp" + hex.EncodeToString(b[:])
}

// ftpSetup makes the user, its home, and the certificate.
func ftpSetup(t testing.TB, dir string, f *FTP) {
	t.Helper()
	if err := os.Chmod(dir, 0o755); err != nil { // the server's user must reach the home
		t.Fatal(err)
	}
	for _, d := range []string{f.Home, filepath.Join(dir, "empty")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, stdin string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	run("useradd", "", "--system", "-M", "-d", f.Home, "-s", "/bin/sh", f.User)
	run("chpasswd", f.User+":"+f.Password+"\n")
	run("chown", "", f.User+":", f.Home)
	if f.TLS {
		f.CAFile = filepath.Join(dir, "cert.pem")
		run("openssl", "", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
			"-addext", "subjectAltName=IP:127.0.0.1", "-keyout", filepath.Join(dir, "key.pem"), "-out", f.CAFile)
	}
}

// ftpConfig is vsftpd.conf: one local user, chrooted, writes allowed,
// passive ports pasv to pasv+19.
func ftpConfig(dir string, port, pasv int, withTLS bool) string {
	if pasv > 65535-20 {
		pasv = 40000
	}
	c := fmt.Sprintf(`listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=%d
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
allow_writeable_chroot=YES
pam_service_name=vsftpd
secure_chroot_dir=%s
pasv_address=127.0.0.1
pasv_min_port=%d
pasv_max_port=%d
vsftpd_log_file=%s
`, port, filepath.Join(dir, "empty"), pasv, pasv+19, filepath.Join(dir, "vsftpd.log"))
	if withTLS {
		c += fmt.Sprintf(`ssl_enable=YES
rsa_cert_file=%s
rsa_private_key_file=%s
force_local_logins_ssl=NO
force_local_data_ssl=NO
require_ssl_reuse=YES
`, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	}
	return c
}

// ftpStop stops the server and the session processes it forked.
func ftpStop(p *proc) {
	p.stop(syscall.SIGTERM)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

func ftpUserDel(user string) { _ = exec.Command("userdel", user).Run() }

// URL is the storage URL of a directory on this server: ftps:// when the
// server has TLS (trusting its certificate), else ftp://.
func (f *FTP) URL(dir string) string {
	if f.TLS {
		return fmt.Sprintf("ftps://%s@%s%s?ca-file=%s", f.User, f.Addr, dir, f.CAFile)
	}
	return fmt.Sprintf("ftp://%s@%s%s", f.User, f.Addr, dir)
}

// PlainURL is the ftp:// URL of a directory, TLS or not.
func (f *FTP) PlainURL(dir string) string { return fmt.Sprintf("ftp://%s@%s%s", f.User, f.Addr, dir) }

// SetEnv gives Remora the password for the test's duration.
func (f *FTP) SetEnv(t *testing.T) { t.Setenv("REMORA_FTP_PASSWORD", f.Password) }

// Env is the environment that gives Remora the password.
func (f *FTP) Env() []string { return []string{"REMORA_FTP_PASSWORD=" + f.Password} }

// MakeDir makes a directory below the user's "/" that the user owns, and
// returns its path as the server shows it.
func (f *FTP) MakeDir(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(f.Home, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("chown", "-R", f.User+":", p)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	return "/" + name
}
