// Package smb is the storage backend for smb:// URLs: objects are files in a
// directory of an SMB 2/3 share (Windows, Samba, NAS appliances). Importing it
// registers the scheme with storage.Open. The URL names the user, the server,
// the share and a directory in it, which must exist; directories below it are
// made as needed:
//
//	smb://user@host[:port]/share/path?password_env=NAME&password_file=PATH&domain=D&stall=60s&retries=5
//
// The password comes from REMORA_SMB_PASSWORD, or from the variable that
// password_env= names, or from the file that password_file= names (its first
// line); never from the URL. domain= is the NTLM domain (workgroup) of the
// user, when the server wants one. The port defaults to 445.
//
// Put writes to a temporary name (.<name>.remora-tmp-<random>) in the key's
// directory, flushes it and renames it over the final name in one step
// (SET_INFO FileRenameInformation with ReplaceIfExists), so a reader sees the
// old object or the new one, never part of one. List walks the directories
// and never shows temporary files; Sweep removes old ones. A download that
// breaks, or moves no data for stall=, part way reconnects and goes on from
// the offset it reached, up to retries= times in a row, as long as the file
// is unchanged.
//
// Memory: a Put keeps 4 writes of 1 MiB in flight (the most the SMB client
// sends in one request), so it holds up to four 1 MiB buffers and about as
// much in the requests on the wire; a download holds one 1 MiB buffer and
// its answer in flight. Garbage comes on top until the next collection.
// Each operation in flight has a connection of its own. One that ends its
// operation intact waits for the next (up to 4 of them, for 30 s), which
// checks it with an ECHO first; one that broke, or whose operation's context
// ended, is closed.
package smb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cloudsoda/go-smb2"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/internal/redact"
	"remora.dev/remora/storage"
)

func init() {
	storage.Register("smb", open)
	storage.AcceptUser("smb")
}

// passwordEnv is where the password is by default.
const passwordEnv = "REMORA_SMB_PASSWORD"

// example is the URL that errors about a malformed one show.
const example = "smb://user@host/share/backups"

// dialTimeout bounds connecting and logging in.
const dialTimeout = 30 * time.Second

// Storage keeps objects as files below a directory of an SMB share.
type Storage struct {
	addr     string // host:port
	user     string
	domain   string
	password string
	pwFrom   string // where the password came from, for errors
	share    string
	root     string // below the share, backslash-separated; "" is the share's root
	display  string
	xfer     storage.Transfer // stall= and retries=, for downloads
	log      *slog.Logger

	pool storage.IdlePool[*conn] // connections waiting for an operation
}

// open returns the storage an smb:// URL names. It contacts nothing: Check
// does.
func open(_ context.Context, u *url.URL, o storage.Options) (storage.Storage, error) {
	s, err := configure(u)
	if err != nil {
		return nil, err
	}
	display := *u
	display.RawQuery = ""
	s.display = display.String()
	q := u.Query()
	if s.password, s.pwFrom, err = password(q.Get("password_env"), q.Get("password_file")); err != nil {
		return nil, fmt.Errorf("storage %s: %w", s, err)
	}
	redact.Add(s.password) // whichever variable or file it came from
	s.log = o.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// badURL is the error about a malformed smb:// URL.
func badURL(u *url.URL, format string, a ...any) error {
	return fmt.Errorf("%w %q: %s (e.g. %s)", storage.ErrBadURL, u.String(), fmt.Sprintf(format, a...), example)
}

// configure reads the user, server, share, directory and options of u.
func configure(u *url.URL) (*Storage, error) {
	s := &Storage{xfer: storage.DefaultTransfer()}
	s.pool.Max, s.pool.Idle = maxIdle, idleTime
	if err := storage.ApplyOptions(s, u.Query(), options); err != nil {
		return nil, badURL(u, "%v", err)
	}
	if u.User == nil || u.User.Username() == "" {
		return nil, badURL(u, "no user name")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return nil, badURL(u, "no server")
	}
	if port == "" {
		port = "445"
	} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, badURL(u, "bad port %q", port)
	}
	p := strings.Trim(u.Path, "/")
	share, dir, _ := strings.Cut(p, "/")
	if share == "" {
		return nil, badURL(u, "no share")
	}
	if dir != "" && storage.CheckKey(dir) != nil {
		return nil, badURL(u, "invalid directory %q", dir)
	}
	s.addr, s.user, s.share, s.root = net.JoinHostPort(host, port), u.User.Username(), share, strings.ReplaceAll(dir, "/", `\`)
	return s, nil
}

// options are the URL's options; the password's are read by open.
var options = append([]storage.Option[*Storage]{
	{Name: "password_env", Set: func(*Storage, string) error { return nil }},
	{Name: "password_file", Set: func(*Storage, string) error { return nil }},
	{Name: "domain", Set: func(s *Storage, v string) error { s.domain = v; return nil }},
}, storage.TransferOptions(func(s *Storage) *storage.Transfer { return &s.xfer })...)

// password reads the password from the variable or file the URL names, else
// from REMORA_SMB_PASSWORD. Errors name the source, never the value.
func password(env, file string) (pw, from string, err error) {
	switch {
	case env != "" && file != "":
		return "", "", errors.New("password_env and password_file both given: use one")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", "", fmt.Errorf("password_file: %w", errs.Root(err))
		}
		pw, _, _ = strings.Cut(string(b), "\n")
		pw = strings.TrimSuffix(pw, "\r")
		if pw == "" {
			return "", "", fmt.Errorf("password_file %s is empty", file)
		}
		return pw, "the file " + file, nil
	case env == "":
		env = passwordEnv
	}
	pw, ok := os.LookupEnv(env)
	switch {
	case !ok:
		return "", "", fmt.Errorf("no password: set %s (in a pod, in the storage Secret)", env)
	case pw == "":
		return "", "", fmt.Errorf("%s is empty", env)
	}
	return pw, env, nil
}

func (s *Storage) String() string { return s.display }

// NTSTATUS codes the errors tell apart ([MS-ERREF] 2.3).
const (
	statusWrongPassword   = 0xC000006A
	statusLogonFailure    = 0xC000006D
	statusAccountRestrict = 0xC000006E
	statusPasswordExpired = 0xC0000071
	statusAccountDisabled = 0xC0000072
	statusAccountLocked   = 0xC0000234
	statusBadNetworkName  = 0xC00000CC
	statusDiskFull        = 0xC000007F
	statusQuotaExceeded   = 0xC0000044
	statusNotADirectory   = 0xC0000103
)

func ntStatus(err error) uint32 {
	var re *smb2.ResponseError
	if errors.As(err, &re) {
		return re.Code
	}
	return 0
}

// namedError is an error that names the storage and says what to fix; it
// wraps the client's error, which tells whether it is worth retrying.
type namedError struct {
	msg error
	err error
}

func (e *namedError) Error() string { return e.msg.Error() }
func (e *namedError) Unwrap() error { return e.err }

// err turns an SMB client error into one line that says what to fix.
func (s *Storage) err(op, key string, err error) error {
	return &namedError{msg: s.explain(op, key, err), err: err}
}

func (s *Storage) explain(op, key string, err error) error {
	what := op
	if key != "" {
		what += " " + key
	}
	switch ntStatus(err) {
	case statusWrongPassword, statusLogonFailure, statusAccountRestrict:
		return fmt.Errorf("storage %s: %s: login as %q refused: check the user name and the password in %s", s, what, s.user, s.pwFrom)
	case statusPasswordExpired, statusAccountDisabled, statusAccountLocked:
		return fmt.Errorf("storage %s: %s: login as %q refused: the account is disabled, locked or its password expired", s, what, s.user)
	case statusBadNetworkName:
		return fmt.Errorf("storage %s: share %q does not exist on %s: create it or fix the storage URL", s, s.share, s.addr)
	case statusDiskFull, statusQuotaExceeded:
		return fmt.Errorf("storage %s: %s: the share is full (or the user's quota is used up)", s, what)
	case statusNotADirectory:
		return fmt.Errorf("storage %s: %s: a file stands where a directory should be", s, what)
	}
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("storage %s: %s: permission denied: %q may not do this in share %q; check the share's and the directory's permissions", s, what, s.user, s.share)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("storage %s: %s: %w", s, what, err)
	}
	var terr *smb2.TransportError
	if errors.As(err, &terr) {
		return fmt.Errorf("storage %s: %s: the connection to %s broke: %v: check the server and the network", s, what, s.addr, errs.Root(err))
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return fmt.Errorf("storage %s: %s: cannot reach %s: %v: check the host, the port and the network", s, what, s.addr, errs.Root(err))
	}
	return fmt.Errorf("storage %s: %s: %w", s, what, err)
}
