package webdav

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"remora.dev/remora/internal/certpool"
	"remora.dev/remora/storage"
)

// example is the URL that errors about a malformed one show.
const example = "webdavs://host:port/backups?ca-file=/ca.pem"

// envName is what user_env= and password_env= accept: a variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// config is what a URL sets up before the client is made.
type config struct {
	s       *Storage
	roots   *x509.CertPool // from ca-file=; nil trusts the system's CAs
	userEnv string
	passEnv string
}

// options are the URL's options and how each sets up the config; timeout=
// is stall='s name from before every backend had it.
var options = append([]storage.Option[*config]{
	{Name: "ca-file", Set: setCAFile},
	{Name: "user_env", Set: func(c *config, v string) error { return setEnv(&c.userEnv, "user_env", v) }},
	{Name: "password_env", Set: func(c *config, v string) error { return setEnv(&c.passEnv, "password_env", v) }},
}, storage.TransferOptions(func(c *config) *storage.Transfer { return &c.s.xfer }, "timeout")...)

func badURL(u *url.URL, format string, a ...any) error {
	return fmt.Errorf("%w %q: %s (e.g. %s)", storage.ErrBadURL, u.String(), fmt.Sprintf(format, a...), example)
}

// configure reads the host, the root collection and the options of u. When
// an option is given twice, the last value counts.
func configure(u *url.URL) (*config, error) {
	if u.Host == "" || u.Hostname() == "" {
		return nil, badURL(u, "no host")
	}
	root := strings.Trim(u.Path, "/")
	if root != "" && storage.CheckKey(root) != nil {
		return nil, badURL(u, "invalid path %q", u.Path)
	}
	if u.Fragment != "" || u.Opaque != "" {
		return nil, badURL(u, "unexpected %q", u.Fragment+u.Opaque)
	}
	scheme := "http"
	if u.Scheme == "webdavs" {
		scheme = "https"
	}
	p := "/"
	if root != "" {
		p = "/" + root + "/"
	}
	display := url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(p, "/")}
	c := &config{
		s: &Storage{
			base:    url.URL{Scheme: scheme, Host: u.Host, Path: p},
			display: display.String(),
			xfer:    storage.DefaultTransfer(),
		},
		userEnv: defaultUserEnv,
		passEnv: defaultPasswordEnv,
	}
	if err := storage.ApplyOptions(c, u.Query(), options); err != nil {
		return nil, badURL(u, "%v", err)
	}
	if c.roots != nil && scheme != "https" {
		return nil, badURL(u, "ca-file= needs webdavs:// (HTTPS)")
	}
	return c, nil
}

func setCAFile(c *config, v string) error {
	pool, err := certpool.FromFile(v)
	if err != nil {
		return fmt.Errorf("ca-file: %w", err)
	}
	c.roots = pool
	return nil
}

func setEnv(dst *string, name, v string) error {
	if !envName.MatchString(v) {
		return fmt.Errorf("%s=%q: want the name of an environment variable", name, v)
	}
	*dst = v
	return nil
}
