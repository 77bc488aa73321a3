package ftp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"

	"remora.dev/remora/internal/certpool"
	"remora.dev/remora/internal/redact"
	"remora.dev/remora/storage"
)

// defaultPwEnv holds the password unless the URL says otherwise.
const defaultPwEnv = "REMORA_FTP_PASSWORD"

const example = "ftp://user@host:21/backups or ftps://user@host/backups?ca-file=/ca.pem"

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// options are the URL's options: stall= and retries= (timeout= is stall='s
// name from before every backend had it); the others are read by options
// and readPassword.
var options = append([]storage.Option[*Storage]{
	{Name: "password_env", Set: noop}, {Name: "password_file", Set: noop}, {Name: "ca-file", Set: noop},
}, storage.TransferOptions(func(s *Storage) *storage.Transfer { return &s.xfer }, "timeout")...)

func noop(*Storage, string) error { return nil }

func badURL(u *url.URL, format string, a ...any) error {
	return fmt.Errorf("%w %q: %s (e.g. %s)", storage.ErrBadURL, u.Redacted(), fmt.Sprintf(format, a...), example)
}

// configure reads the account, server, directory and options of u, and the
// password from where they say.
func configure(u *url.URL) (*Storage, error) {
	if u.User == nil || u.User.Username() == "" {
		return nil, badURL(u, "name the user to log in as")
	}
	host := u.Hostname()
	if host == "" || u.Opaque != "" {
		return nil, badURL(u, "name the server")
	}
	port := u.Port()
	if port == "" {
		port = "21"
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, badURL(u, "bad port %q", port)
	}
	root := path.Clean("/" + u.Path)
	if u.Path != "" && root != "/" && storage.CheckKey(strings.TrimPrefix(root, "/")) != nil || strings.Contains(u.Path, "/../") {
		return nil, badURL(u, "invalid directory %q", u.Path)
	}
	s := &Storage{addr: net.JoinHostPort(host, port), user: u.User.Username(), root: root, xfer: storage.DefaultTransfer()}
	s.pool.Max, s.pool.Idle = maxIdle, defaultIdleTime
	display := url.URL{Scheme: u.Scheme, User: url.User(s.user), Host: u.Host, Path: root}
	s.display = display.String()
	q := u.Query()
	if err := storage.ApplyOptions(s, q, options); err != nil {
		return nil, badURL(u, "%v", err)
	}
	if err := s.options(u.Scheme, host, q); err != nil {
		return nil, badURL(u, "%v", err)
	}
	if err := s.readPassword(q.Get("password_env"), q.Get("password_file")); err != nil {
		return nil, fmt.Errorf("storage %s: %w", s, err)
	}
	return s, nil
}

// options sets up TLS.
func (s *Storage) options(scheme, host string, q url.Values) error {
	ca := q.Get("ca-file")
	if scheme != "ftps" {
		if ca != "" {
			return errors.New("ca-file is for ftps:// URLs")
		}
		return nil
	}
	s.tls = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12,
		// Data connections resume the control connection's TLS session,
		// which servers such as vsftpd (require_ssl_reuse) insist on.
		ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	if ca != "" {
		pool, err := certpool.FromFile(ca)
		if err != nil {
			return fmt.Errorf("ca-file: %v", err)
		}
		s.tls.RootCAs = pool
	}
	return nil
}

// readPassword reads the password from the variable or file the options
// name, else REMORA_FTP_PASSWORD, and masks it in everything Remora prints.
// Errors name the variable or file, never the value.
func (s *Storage) readPassword(env, file string) error {
	switch {
	case env != "" && file != "":
		return errors.New("give password_env or password_file, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("password_file: %v", err)
		}
		s.password = strings.TrimRight(string(b), "\r\n")
		s.pwFrom = "the password in " + file
		if s.password == "" {
			return fmt.Errorf("password_file %s is empty", file)
		}
	default:
		if env == "" {
			env = defaultPwEnv
		}
		if !envNameRE.MatchString(env) {
			return fmt.Errorf("password_env %q is not a variable name", env)
		}
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return fmt.Errorf("no password: set %s (in a pod, in the storage Secret)", env)
		}
		s.password, s.pwFrom = v, "the password in "+env
	}
	redact.Add(s.password)
	return nil
}
