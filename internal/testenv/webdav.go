package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// WebDAV is a running Apache httpd serving WebDAV (mod_dav_fs) over HTTP and
// HTTPS, with basic auth.
type WebDAV struct {
	Addr     string // host:port of plain HTTP
	TLSAddr  string // host:port of HTTPS
	CAFile   string // the HTTPS server's self-signed certificate
	Dir      string // the served directory: URL path / is this directory
	User     string
	Password string
	uid, gid int // the owner of what the server may write; -1 when it runs as us
	p        *proc
}

// The modules a WebDAV server needs, from Debian's apache2 package.
var webdavModules = []string{"mpm_event", "authz_core", "authn_core", "authn_file", "auth_basic",
	"authz_user", "dav", "dav_fs", "socache_shmcb", "ssl"}

// StartWebDAV starts Apache httpd with mod_dav_fs in a temp dir. The binary is
// found through REMORA_APACHE2 or /usr/sbin/apache2 (Debian's apache2 package).
func StartWebDAV(t testing.TB) *WebDAV { t.Helper(); return startWebDAV(t, "") }

// StartWebDAVUnlimited is StartWebDAV with no limit on a request's body:
// Apache 2.4.54 and later refuse a PUT of more than 1 GiB by default (413),
// so a server that receives larger backups is configured so.
func StartWebDAVUnlimited(t testing.TB) *WebDAV {
	t.Helper()
	return startWebDAV(t, "  LimitRequestBody 0\n")
}

func startWebDAV(t testing.TB, davConf string) *WebDAV {
	t.Helper()
	bin := lookPath("REMORA_APACHE2", "apache2")
	if bin == "" && isExec("/usr/sbin/apache2") {
		bin = "/usr/sbin/apache2"
	}
	modules := "/usr/lib/apache2/modules"
	if bin == "" || !isExec(bin) {
		Missing(t, "apache2 (the WebDAV test server)", "run hack/install-deps.sh or apt-get install apache2")
	}
	if _, err := os.Stat(filepath.Join(modules, "mod_dav_fs.so")); err != nil {
		Missing(t, "mod_dav_fs (the WebDAV test server's module)", "apt-get install apache2")
	}
	dir, err := os.MkdirTemp("", "rdav")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The workers switch to www-data when started as root: they must reach
	// the temp dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &WebDAV{Dir: filepath.Join(dir, "dav"), User: "alice", Password: Canary, uid: -1, gid: -1}
	runAs := ""
	if os.Getuid() == 0 {
		u, err := user.Lookup("www-data")
		if err != nil {
			t.Fatalf("apache2 as root needs the www-data user: %v", err)
		}
		w.uid, _ = strconv.Atoi(u.Uid)
		w.gid, _ = strconv.Atoi(u.Gid)
		runAs = "User www-data\nGroup www-data\n"
	}
	for _, d := range []string{"dav", "lock", "run"} {
		w.mkdir(t, filepath.Join(dir, d), 0o755)
	}
	w.CAFile = filepath.Join(dir, "cert.pem")
	writeSelfSigned(t, w.CAFile, filepath.Join(dir, "key.pem"))
	sum := sha1.Sum([]byte(w.Password))
	htpasswd := w.User + ":{SHA}" + base64.StdEncoding.EncodeToString(sum[:]) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(htpasswd), 0o644); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for try := 0; try < 3; try++ {
		w.Addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		w.TLSAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		conf := filepath.Join(dir, "httpd.conf")
		if err := os.WriteFile(conf, []byte(w.config(dir, modules, runAs, davConf)), 0o644); err != nil {
			t.Fatal(err)
		}
		w.p = start(t, exec.Command(bin, "-DFOREGROUND", "-f", conf), filepath.Join(dir, fmt.Sprintf("apache-%d.log", try)))
		lastErr = w.p.waitReady(func() error {
			for _, a := range []string{w.Addr, w.TLSAddr} {
				c, err := net.Dial("tcp", a)
				if err != nil {
					return err
				}
				c.Close()
			}
			return nil
		})
		if lastErr == nil {
			t.Cleanup(func() { w.p.stop(syscall.SIGTERM) })
			return w
		}
		w.p.stop(syscall.SIGKILL)
	}
	t.Fatalf("apache2: %v", lastErr)
	return nil
}

// config is httpd.conf: everything in dir, no file of /etc read.
func (w *WebDAV) config(dir, modules, runAs, davConf string) string {
	var b strings.Builder
	for _, m := range webdavModules {
		fmt.Fprintf(&b, "LoadModule %s_module %s/mod_%s.so\n", m, modules, m)
	}
	fmt.Fprintf(&b, `ServerRoot %[1]q
ServerName 127.0.0.1
Listen %[2]s
Listen %[3]s
PidFile "%[1]s/run/httpd.pid"
DefaultRuntimeDir "%[1]s/run"
ErrorLog "%[1]s/error.log"
%[4]sStartServers 1
DavLockDB "%[1]s/lock/davlock"
SSLSessionCache "shmcb:%[1]s/run/ssl_scache(512000)"
DocumentRoot "%[1]s/dav"
<Directory />
  Require all denied
</Directory>
<Directory "%[1]s/dav">
  Dav On
  AuthType Basic
  AuthName dav
  AuthUserFile "%[1]s/htpasswd"
  Require valid-user
%[5]s</Directory>
<VirtualHost %[3]s>
  ServerName 127.0.0.1
  SSLEngine on
  SSLCertificateFile "%[1]s/cert.pem"
  SSLCertificateKeyFile "%[1]s/key.pem"
</VirtualHost>
`, dir, w.Addr, w.TLSAddr, runAs, davConf)
	return b.String()
}

// mkdir makes a directory the server may write.
func (w *WebDAV) mkdir(t testing.TB, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(p, mode); err != nil {
		t.Fatal(err)
	}
	if w.uid >= 0 {
		if err := os.Chown(p, w.uid, w.gid); err != nil {
			t.Fatal(err)
		}
	}
}

// MakeCollection makes the collection /name (a directory below Dir) that the
// server may write, and returns its URL path.
func (w *WebDAV) MakeCollection(t testing.TB, name string) string {
	t.Helper()
	w.mkdir(t, filepath.Join(w.Dir, name), 0o755)
	return "/" + name
}

// MakeReadOnlyCollection makes the collection /name that the server may
// read but not write.
func (w *WebDAV) MakeReadOnlyCollection(t testing.TB, name string) string {
	t.Helper()
	// Owned by us: when we are root, the www-data workers may not write it;
	// when not, the mode stops our own workers.
	if err := os.Mkdir(filepath.Join(w.Dir, name), 0o555); err != nil {
		t.Fatal(err)
	}
	return "/" + name
}

// URL is the Remora storage URL of path on the plain HTTP port.
func (w *WebDAV) URL(path string) string { return "webdav://" + w.Addr + path }

// TLSURL is the Remora storage URL of path on the HTTPS port, trusting the
// server's certificate.
func (w *WebDAV) TLSURL(path string) string {
	return "webdavs://" + w.TLSAddr + path + "?ca-file=" + w.CAFile
}

// Env is the environment that gives Remora the server's user and password.
func (w *WebDAV) Env() []string {
	return []string{"REMORA_WEBDAV_USER=" + w.User, "REMORA_WEBDAV_PASSWORD=" + w.Password}
}

// SetEnv sets the credentials in this process's environment for the test.
func (w *WebDAV) SetEnv(t *testing.T) {
	t.Setenv("REMORA_WEBDAV_USER", w.User)
	t.Setenv("REMORA_WEBDAV_PASSWORD", w.Password)
}

// writeSelfSigned writes a certificate for 127.0.0.1 and its key.
func writeSelfSigned(t testing.TB, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	// Apache reads the key as root before it switches users.
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
}
