package sftp

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"remora.dev/remora/storage"
)

// The default variables that hold the credentials and the known host keys.
// X holds the value itself (handy as a key of a Kubernetes Secret), X_FILE
// names a file that holds it.
const (
	envPassword       = "REMORA_SFTP_PASSWORD"
	envKey            = "REMORA_SFTP_KEY"
	envKeyFile        = "REMORA_SFTP_KEY_FILE"
	envKnownHosts     = "REMORA_SFTP_KNOWN_HOSTS"
	envKnownHostsFile = "REMORA_SFTP_KNOWN_HOSTS_FILE"
)

// example is the URL that errors about a malformed one show.
const example = "sftp://backup@host:22/srv/backups"

// config is what a URL and the environment set up before any connection.
type config struct {
	user, addr, root string
	auth             []ssh.AuthMethod
	authFrom         string // where the credentials come from, for errors
	hostKeys         ssh.HostKeyCallback
	hostKeysFrom     string
	xfer             storage.Transfer // stall= and retries=, for downloads
}

func badURL(u *url.URL, format string, a ...any) error {
	return fmt.Errorf("%w %q: %s (e.g. %s)", storage.ErrBadURL, u.Redacted(), fmt.Sprintf(format, a...), example)
}

// options are the URL's options; those naming credentials and host keys
// are read by credentials and knownHosts.
var options = append([]storage.Option[*config]{
	{Name: "password_env", Set: noop}, {Name: "key_env", Set: noop}, {Name: "key_file", Set: noop},
	{Name: "known_hosts", Set: noop}, {Name: "known_hosts_env", Set: noop},
}, storage.TransferOptions(func(c *config) *storage.Transfer { return &c.xfer })...)

func noop(*config, string) error { return nil }

// configure reads the user, host, path and options of u, and the
// credentials and known host keys they name.
func configure(u *url.URL) (*config, error) {
	c := &config{user: u.User.Username(), root: path.Clean(u.Path), xfer: storage.DefaultTransfer()}
	if c.user == "" {
		return nil, badURL(u, "name the login user before the host")
	}
	if u.Hostname() == "" {
		return nil, badURL(u, "no host")
	}
	if !strings.HasPrefix(u.Path, "/") {
		return nil, badURL(u, "want an absolute path on the server")
	}
	port := u.Port()
	if port == "" {
		port = "22"
	}
	c.addr = net.JoinHostPort(u.Hostname(), port)
	q := u.Query()
	if err := storage.ApplyOptions(c, q, options); err != nil {
		return nil, badURL(u, "%v", err)
	}
	if err := c.credentials(q); err != nil {
		return nil, err
	}
	if err := c.knownHosts(q); err != nil {
		return nil, err
	}
	return c, nil
}

// credentials picks the private key and the password. Both may be given: the
// key is tried first. Errors name variables and files, never their contents.
func (c *config) credentials(q url.Values) error {
	var from []string
	key, keyFrom, err := privateKey(q)
	if err != nil {
		return err
	}
	if key != nil {
		c.auth = append(c.auth, ssh.PublicKeys(key))
		from = append(from, keyFrom)
	}
	pwVar := envPassword
	if v := q.Get("password_env"); v != "" {
		pwVar = v
	}
	if pw, ok := os.LookupEnv(pwVar); ok {
		if pw == "" {
			return fmt.Errorf("%s is empty: set the SFTP password there, or unset it and give a key", pwVar)
		}
		c.auth = append(c.auth, ssh.Password(pw))
		from = append(from, pwVar)
	} else if q.Has("password_env") {
		return fmt.Errorf("password_env=%s names a variable that is not set", pwVar)
	}
	if len(c.auth) == 0 {
		return fmt.Errorf("no SFTP credentials: set %s, or a private key in %s or a key file named by %s (in a pod, in the storage Secret)", envPassword, envKey, envKeyFile)
	}
	c.authFrom = strings.Join(from, " and ")
	return nil
}

// privateKey reads the key that key_env=, key_file=, REMORA_SFTP_KEY or
// REMORA_SFTP_KEY_FILE gives, in that order; nil if none does.
func privateKey(q url.Values) (ssh.Signer, string, error) {
	var pem []byte
	var from string
	switch {
	case q.Get("key_env") != "":
		from = q.Get("key_env")
		v, ok := os.LookupEnv(from)
		if !ok || v == "" {
			return nil, "", fmt.Errorf("key_env=%s names a variable that is not set or empty", from)
		}
		pem = []byte(v)
	case q.Get("key_file") != "" || os.Getenv(envKeyFile) != "" && os.Getenv(envKey) == "":
		from = q.Get("key_file")
		if from == "" {
			from = os.Getenv(envKeyFile)
		}
		b, err := os.ReadFile(from)
		if err != nil {
			return nil, "", fmt.Errorf("SFTP key file: %w", err)
		}
		pem = b
	case os.Getenv(envKey) != "":
		from, pem = envKey, []byte(os.Getenv(envKey))
	default:
		return nil, "", nil
	}
	key, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, "", fmt.Errorf("the SFTP private key in %s is encrypted: give it without a passphrase (ssh-keygen -p -N '')", from)
	}
	if err != nil {
		return nil, "", fmt.Errorf("the SFTP private key in %s cannot be read: want an OpenSSH or PEM private key", from)
	}
	return key, "the key in " + from, nil
}

// knownHosts reads the host keys to trust: known_hosts_env=, known_hosts=,
// REMORA_SFTP_KNOWN_HOSTS, REMORA_SFTP_KNOWN_HOSTS_FILE, else
// ~/.ssh/known_hosts. There is no way to skip the check.
func (c *config) knownHosts(q url.Values) error {
	var err error
	switch {
	case q.Get("known_hosts_env") != "":
		c.hostKeysFrom = q.Get("known_hosts_env")
		v := os.Getenv(c.hostKeysFrom)
		if v == "" {
			return fmt.Errorf("known_hosts_env=%s names a variable that is not set or empty", c.hostKeysFrom)
		}
		c.hostKeys, err = knownHostsData(v)
	case q.Get("known_hosts") != "":
		c.hostKeysFrom = q.Get("known_hosts")
		c.hostKeys, err = knownhosts.New(c.hostKeysFrom)
	case os.Getenv(envKnownHosts) != "":
		c.hostKeysFrom = envKnownHosts
		c.hostKeys, err = knownHostsData(os.Getenv(envKnownHosts))
	case os.Getenv(envKnownHostsFile) != "":
		c.hostKeysFrom = os.Getenv(envKnownHostsFile)
		c.hostKeys, err = knownhosts.New(c.hostKeysFrom)
	default:
		home, _ := os.UserHomeDir()
		c.hostKeysFrom = filepath.Join(home, ".ssh", "known_hosts")
		if _, serr := os.Stat(c.hostKeysFrom); home == "" || errors.Is(serr, fs.ErrNotExist) {
			return fmt.Errorf("no known host keys for the SFTP server: put its known_hosts lines (ssh-keyscan -p PORT HOST) in %s (in a pod, in the storage Secret), or name a file with %s", envKnownHosts, envKnownHostsFile)
		}
		c.hostKeys, err = knownhosts.New(c.hostKeysFrom)
	}
	if err != nil {
		return fmt.Errorf("known hosts from %s: %w", c.hostKeysFrom, err)
	}
	return nil
}

// knownHostsData parses known_hosts lines held in memory. knownhosts reads
// only files, so they go through a private temporary file, removed at once;
// host keys are public, so nothing secret touches the disk.
func knownHostsData(lines string) (ssh.HostKeyCallback, error) {
	f, err := os.CreateTemp("", "remora-known-hosts-"+rand.Text()[:8])
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(lines + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	cb, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, errors.New(strings.ReplaceAll(err.Error(), f.Name(), "known_hosts"))
	}
	return cb, nil
}
