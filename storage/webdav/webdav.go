// Package webdav is the storage backend for webdav:// (HTTP) and webdavs://
// (HTTPS) URLs: objects are files below a collection of a WebDAV server
// (Apache mod_dav, nginx, Nextcloud, a NAS). Importing it registers both
// schemes with storage.Open. The URL names the server and the collection,
// which must exist; the collections below it are created as needed:
//
//	webdavs://host:port/path?ca-file=/ca.pem&user_env=NAME&password_env=NAME&stall=60s&retries=5
//
// The user and password (basic auth) come from REMORA_WEBDAV_USER and
// REMORA_WEBDAV_PASSWORD, or from the variables user_env= and password_env=
// name; never from the URL. With neither variable set, requests carry no
// credentials. Over webdav:// the password crosses the network in clear:
// use webdavs:// beyond a trusted network.
//
// Put sends the object to a temporary name in the key's collection (PUT,
// streamed with chunked transfer encoding), then renames it (MOVE with
// Overwrite: T), so the key never holds a partial object. Open resumes a
// download that breaks or stalls part way with a range request pinned to the
// object's ETag (storage.Download). List walks the collections with PROPFIND
// Depth: 1.
//
// MKCOL, MOVE, PROPFIND and DELETE that meet a transient fault (a dropped
// connection, no answer for stall=, 408, 429, 5xx) are sent again, up to
// retries= times, with backoff: each can be repeated (a MOVE of this Put's
// own temporary name that finds it gone was done by the attempt whose answer
// was lost). A PUT is not: its body is the backup stream, which cannot be
// read twice, so a broken PUT fails the Put, whose temporary file is removed
// (or swept later) and nothing shows under the key; the caller runs the
// backup again.
//
// Memory: a Put holds a 256 KiB buffer and an Open none, beside net/http's
// buffers (tens of KiB), whatever the object's size; nothing is copied to
// disk. A listing holds one
// collection's PROPFIND answer at a time, and the objects it has found, which
// it sorts before calling fn.
//
// This backend speaks WebDAV over net/http itself: the Go WebDAV clients at
// hand (github.com/studio-b12/gowebdav v0.13) read a body of unknown length
// into memory before a PUT and take no context, so a backup would sit in RAM
// and a cancelled run could not stop a request.
package webdav

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/internal/redact"
	"remora.dev/remora/storage"
)

func init() {
	storage.Register("webdav", open)
	storage.Register("webdavs", open)
}

// Default credential variables.
const (
	defaultUserEnv     = "REMORA_WEBDAV_USER"
	defaultPasswordEnv = "REMORA_WEBDAV_PASSWORD"
)

// tmpMarker is part of the name of every object that Put has not finished.
// List never shows such files; Sweep removes old ones.
const tmpMarker = ".remora-tmp-"

// Storage keeps objects as files below a WebDAV collection.
type Storage struct {
	base    url.URL // scheme http or https, host, and the root collection's path ending in "/"
	display string
	client  *http.Client
	user    string
	pass    string
	auth    bool
	credsAt string           // the variables the credentials come from, for errors
	xfer    storage.Transfer // stall= and retries=
	log     *slog.Logger
	clock   storage.DateClock
}

// open returns the storage a webdav:// or webdavs:// URL names. It contacts
// nothing: Check does.
func open(_ context.Context, u *url.URL, o storage.Options) (storage.Storage, error) {
	c, err := configure(u)
	if err != nil {
		return nil, err
	}
	s := c.s
	if err := s.credentials(c.userEnv, c.passEnv); err != nil {
		return nil, fmt.Errorf("storage %s: %w", s, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = s.xfer.Stall
	tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if c.roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12}
	}
	s.client = &http.Client{
		Transport: s.clock.RoundTripper(tr),
		// A redirect would resend the credentials elsewhere, and a MOVE or
		// PUT may not survive one: the URL must name the collection itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.log = o.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// credentials reads the user and password from the environment. Both or
// neither: one alone is a storage Secret gone wrong. Errors name variables,
// never their values.
func (s *Storage) credentials(userEnv, passEnv string) error {
	user, userSet := os.LookupEnv(userEnv)
	pass, passSet := os.LookupEnv(passEnv)
	s.credsAt = userEnv + " and " + passEnv
	switch {
	case !userSet && !passSet:
		return nil
	case !userSet || user == "":
		return fmt.Errorf("%s is set but %s is missing or empty: set both (in a pod, in the storage Secret), or neither for a server without login", passEnv, userEnv)
	case !passSet:
		return fmt.Errorf("%s is set but %s is missing: set both (in a pod, in the storage Secret), or neither for a server without login", userEnv, passEnv)
	case strings.Contains(user, ":"):
		return fmt.Errorf("%s holds a colon, which basic auth cannot carry in a user name", userEnv)
	}
	s.user, s.pass, s.auth = user, pass, true
	// Masked in every line the program writes, whichever variable held it.
	redact.Add(pass)
	return nil
}

func (s *Storage) String() string { return s.display }

// url is the address of a key (or, ending in "/", a collection) below the
// root.
func (s *Storage) url(key string) string {
	u := s.base
	u.Path += key
	return u.String()
}

// newRequest makes a request for a key below the root, with the credentials.
func (s *Storage) newRequest(ctx context.Context, method, key string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.url(key), body)
	if err != nil {
		return nil, err
	}
	if s.auth {
		req.SetBasicAuth(s.user, s.pass)
	}
	return req, nil
}

// do sends a request with no body, again after a transient fault (retry),
// and returns its answer with the body drained and closed; retried tells
// whether an earlier attempt may have reached the server.
func (s *Storage) do(ctx context.Context, method, key string, header map[string]string) (resp *http.Response, retried bool, err error) {
	resp, err = s.retry(ctx, method+" /"+key, func(ctx context.Context, n int) (*http.Response, error) {
		retried = n > 0
		req, err := s.newRequest(ctx, method, key, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		return s.client.Do(req)
	})
	if err != nil {
		return nil, retried, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp, retried, nil
}

// Check reports whether the root collection exists and the credentials may
// read it.
func (s *Storage) Check(ctx context.Context) error {
	entries, err := s.propfind(ctx, "", "0")
	if err != nil {
		return s.err("check", "", err)
	}
	if len(entries) == 0 || !entries[0].dir {
		return fmt.Errorf("storage %s: %s is not a collection (a directory): fix the storage URL", s, s.base.Path)
	}
	return nil
}

// statusError is a server's answer that was not the one wanted.
type statusError struct {
	code   int
	status string
}

func (e *statusError) Error() string { return e.status }

func unexpected(resp *http.Response) error {
	return &statusError{code: resp.StatusCode, status: resp.Status}
}

func hasStatus(err error, codes ...int) bool {
	var se *statusError
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.code == c {
			return true
		}
	}
	return false
}

// errNoRoot is why a Put failed when the root collection itself is missing.
var errNoRoot = errors.New("the collection does not exist")

// err turns a request's failure into one line that says what to fix.
func (s *Storage) err(op, key string, err error) error {
	what := op
	if key != "" {
		what += " " + key
	}
	var se *statusError
	switch {
	case errors.Is(err, errNoRoot) || (key == "" && hasStatus(err, http.StatusNotFound)):
		return fmt.Errorf("storage %s: collection %s does not exist: create it or fix the storage URL", s, s.base.Path)
	case errors.As(err, &se) && se.code == http.StatusUnauthorized && !s.auth:
		return fmt.Errorf("storage %s: %s: the server asks for a login (%s): set %s", s, what, se.status, s.credsAt)
	case errors.As(err, &se) && se.code == http.StatusUnauthorized:
		return fmt.Errorf("storage %s: %s: login refused (%s): check %s", s, what, se.status, s.credsAt)
	case errors.As(err, &se) && se.code == http.StatusForbidden:
		return fmt.Errorf("storage %s: %s: permission denied (%s): the user may not do this here; check the server's rights on %s", s, what, se.status, s.base.Path)
	case errors.As(err, &se) && se.code == http.StatusInsufficientStorage:
		return fmt.Errorf("storage %s: %s: the server is out of space (%s)", s, what, se.status)
	case errors.As(err, &se) && se.code >= 300 && se.code < 400:
		return fmt.Errorf("storage %s: %s: the server redirects (%s): give the collection's own URL, with the right scheme and a trailing path", s, what, se.status)
	case errors.As(err, &se):
		return fmt.Errorf("storage %s: %s: %s", s, what, se.status)
	case errors.Is(err, errStalled):
		return fmt.Errorf("storage %s: %s: no data moved for %s: check the network, or raise stall= in the storage URL for a slow link", s, what, s.xfer.Stall)
	}
	var cerr *tls.CertificateVerificationError
	if errors.As(err, &cerr) {
		return fmt.Errorf("storage %s: %s: the server's certificate is not trusted (%v): add ca-file=PATH (its CA's certificate) to the storage URL", s, what, errs.Root(err))
	}
	var nerr net.Error
	var uerr *url.Error
	if errors.As(err, &nerr) || errors.As(err, &uerr) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("storage %s: %s: cannot reach %s: %v: check the host, the port and the network", s, what, s.base.Host, errs.Root(err))
	}
	return fmt.Errorf("storage %s: %s: %w", s, what, err)
}

// Stat returns the object's size and time.
func (s *Storage) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.CheckKey(key); err != nil {
		return storage.Object{}, err
	}
	entries, err := s.propfind(ctx, key, "0")
	if hasStatus(err, http.StatusNotFound) {
		return storage.Object{}, storage.NotExist(key)
	}
	if err != nil {
		return storage.Object{}, s.err("stat", key, err)
	}
	if len(entries) == 0 || entries[0].dir {
		return storage.Object{}, storage.NotExist(key)
	}
	e := entries[0]
	return storage.Object{Key: key, Size: e.size, ModTime: e.mod}, nil
}

// Delete removes the object. The collections it leaves empty stay: removing
// one could race with a Put into it.
func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	resp, _, err := s.do(ctx, "DELETE", key, nil)
	if err != nil {
		return s.err("delete", key, err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent, http.StatusAccepted, http.StatusNotFound:
		return nil
	}
	return s.err("delete", key, unexpected(resp))
}

// parent is the collection holding key, "" for the root.
func parent(key string) string {
	d := path.Dir(key)
	if d == "." {
		return ""
	}
	return d
}
