// Package ftp is the storage backend for ftp:// and ftps:// URLs: objects are
// files below a directory of an FTP server. Importing it registers both
// schemes with storage.Open. The URL names the account, the server and the
// directory, which must exist (everything below it is created as needed):
//
//	ftp://user@host:port/absolute/dir?password_env=NAME&password_file=PATH&stall=60s&retries=5
//	ftps://user@host:port/absolute/dir?ca-file=/ca.pem
//
// ftps:// is explicit TLS (AUTH TLS on the control connection, then PROT P:
// every data connection is encrypted too); the server's certificate must be
// trusted by the system or by ca-file=. Data connections are passive (EPSV,
// else PASV, always to the control connection's address).
//
// The password comes from REMORA_FTP_PASSWORD, or the variable password_env=
// names, or the file password_file= names (its trailing newline dropped), so
// two destinations can log in with different passwords; never from the URL.
//
// A Put uploads to a temporary name in the key's directory
// (name.remora-tmp-<random>), checks the stored size, then renames it over
// the final name (RNFR/RNTO). Servers that refuse to rename onto an existing
// file get the old file deleted first and the rename retried: a crash between
// the two leaves the key missing, with the complete new content under its
// temporary name, which Sweep removes once it is old enough. A failed Put
// deletes its temporary file; one that cannot (the connection is gone)
// leaves it to Sweep. List never shows temporary files.
//
// List uses MLSD where the server offers it, else LIST -a (hidden files
// included) and MDTM for each object's exact time. A download that breaks part
// way resumes from its offset (REST), on a new connection, up to retries=
// times, if the file's size and time are unchanged. A connection that moves
// no data for stall= fails (timeout= is its older name). Now is the server's
// clock: the time it stamps on a small file made for the purpose.
//
// FTP connections are not safe for concurrent use, so each operation in
// flight has a control connection of its own; a Storage is safe for concurrent
// use. A connection whose operation ended in step with the server waits for
// the next operation (up to 4 of them, for 30 s), which checks it with a NOOP
// first: a backup's dozen operations log in once, not a dozen times (a login
// costs 50–200 ms on a PAM-backed server). One that failed is closed.
//
// Memory: a transfer holds a 32 KiB copy buffer (plus TLS record buffers for
// ftps), whatever the object's size; nothing is staged on disk. List holds the
// entries of the listed subtree while it sorts them.
package ftp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"net/url"
	"path"
	"strings"
	"syscall"

	"github.com/jlaffaye/ftp"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/storage"
)

func init() {
	for _, scheme := range []string{"ftp", "ftps"} {
		storage.Register(scheme, open)
		storage.AcceptUser(scheme)
	}
}

// tmpMarker is part of the name of every file that Put has not finished.
const tmpMarker = ".remora-tmp-"

// Storage keeps objects as files below a directory of an FTP server.
type Storage struct {
	addr     string // host:port
	user     string
	password string
	root     string // absolute, no trailing slash ("/" for the top)
	tls      *tls.Config
	xfer     storage.Transfer // stall= and retries=
	display  string
	pwFrom   string // where the password comes from, for errors
	log      *slog.Logger

	pool storage.IdlePool[*conn] // logged-in connections waiting for an operation

	// wrap, when set (by tests), wraps every connection the client makes.
	wrap func(c net.Conn, data bool) net.Conn
}

// open returns the storage an ftp:// or ftps:// URL names. It contacts
// nothing: Check does.
func open(_ context.Context, u *url.URL, o storage.Options) (storage.Storage, error) {
	s, err := configure(u)
	if err != nil {
		return nil, err
	}
	s.log = o.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

func (s *Storage) String() string { return s.display }

// keyPath is the server path of a key.
func (s *Storage) keyPath(key string) string { return path.Join(s.root, key) }

// Check logs in and checks that the directory exists.
func (s *Storage) Check(ctx context.Context) error {
	c, err := s.get(ctx)
	if err != nil {
		return err
	}
	defer c.release()
	if err := c.ChangeDir(s.root); err != nil {
		return s.rootErr(err)
	}
	return nil
}

// rootErr is the error for a root directory the server refuses.
func (s *Storage) rootErr(err error) error {
	if code(err) == ftp.StatusFileUnavailable {
		return fmt.Errorf("storage %s: directory %s does not exist or the user %s may not enter it (%s): create it or fix the storage URL", s, s.root, s.user, reply(err))
	}
	return s.err("open directory", s.root, err)
}

// code is the FTP reply code of a protocol error, or 0.
func code(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// reply is a server reply as "550 Failed to open file.".
func reply(err error) string {
	var te *textproto.Error
	if errors.As(err, &te) {
		return fmt.Sprintf("%d %s", te.Code, strings.TrimSpace(te.Msg))
	}
	return errs.Root(err).Error()
}

// err turns a client error into one line that says what to fix. Server
// replies never echo the password, so they are kept.
func (s *Storage) err(op, what string, err error) error {
	if what != "" {
		op += " " + what
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("storage %s: %s: %w", s, op, err)
	}
	switch c := code(err); {
	case c == ftp.StatusNotLoggedIn:
		return fmt.Errorf("storage %s: %s: not logged in (%s): check the user and %s", s, op, reply(err), s.pwFrom)
	case c == ftp.Status452 || c == ftp.StatusExceededStorage:
		return fmt.Errorf("storage %s: %s: the server is out of space (%s)", s, op, reply(err))
	case c == ftp.StatusFileUnavailable || c == ftp.StatusBadFileName || c == ftp.StatusFileActionIgnored:
		return fmt.Errorf("storage %s: %s: refused (%s): check that the user %s may write below %s", s, op, reply(err), s.user, s.root)
	case c != 0:
		return fmt.Errorf("storage %s: %s: %s", s, op, reply(err))
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		return fmt.Errorf("storage %s: %s: the server's TLS certificate is not trusted (%v): add its CA with ca-file= in the storage URL", s, op, cve.Err)
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return fmt.Errorf("storage %s: %s: TLS handshake failed: the server did not answer in TLS", s, op)
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return fmt.Errorf("storage %s: %s: no data moved for %s: check the network, or raise stall= in the storage URL for a slow link", s, op, s.xfer.Stall)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) || errors.As(err, &nerr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, io.EOF) {
		return fmt.Errorf("storage %s: %s: cannot reach %s: %v: check the host, the port and the network", s, op, s.addr, errs.Root(err))
	}
	return fmt.Errorf("storage %s: %s: %w", s, op, err)
}
