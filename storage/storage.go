// Package storage holds the places where backups are kept, behind one
// interface. The backends live in subpackages, each registering its URL
// scheme when linked in: storage/file (file://, a local directory) and
// storage/s3 (s3://, S3-compatible object storage). A program links in the
// ones it accepts with blank imports, then calls Open with a URL.
//
// A Storage is rooted at the prefix of its URL; keys are slash-separated paths
// below that root. Every implementation gives these guarantees, which the rest
// of Remora relies on and storagetest checks:
//
//   - Put is all-or-nothing: after a failed or interrupted Put the key either
//     does not exist or still holds its previous content; a reader never sees a
//     partly written object under the key.
//   - After a successful Put, Open and List see the object (read-after-write).
//   - Open and Stat of a missing key return an error matching fs.ErrNotExist;
//     Delete of a missing key succeeds.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Object describes one stored object.
type Object struct {
	Key     string // relative to the storage root
	Size    int64
	ModTime time.Time
}

// Storage is a place to keep backups.
type Storage interface {
	// Put stores everything read from r under key. It reads r to EOF; if r
	// returns an error, Put stores nothing and returns that error.
	Put(ctx context.Context, key string, r io.Reader) (size int64, err error)
	// Open returns the object's content. A missing key gives fs.ErrNotExist.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// List calls fn once for every object whose key starts with prefix, in
	// lexical key order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(Object) error) error
	// Stat returns the object's size and time. A missing key gives fs.ErrNotExist.
	Stat(ctx context.Context, key string) (Object, error)
	// Delete removes the object. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Check tells whether the storage can be reached and used, with an error
	// that says what to fix.
	Check(ctx context.Context) error
	// String is the storage URL, safe to print.
	String() string
}

// Sweeper is a storage that can remove what interrupted writes left behind
// below a prefix: temporary files, unfinished multipart uploads.
type Sweeper interface {
	Sweep(ctx context.Context, prefix string, olderThan time.Time) (removed int, err error)
}

// Clock is a storage that can tell the time by its own clock: the one that
// stamps its objects' ModTime. Whatever compares ModTime with "now" asks it
// rather than trusting the local clock, which may run fast.
type Clock interface {
	Now(ctx context.Context) (time.Time, error)
}

// Options are what Open passes to every backend.
type Options struct {
	// Logger receives the backend's notices (retries, resumed downloads);
	// nil discards them.
	Logger *slog.Logger
}

// ErrBadURL is wrapped by every error about a malformed storage URL.
var ErrBadURL = errors.New("bad storage URL")

// openFunc opens the storage that a URL of a backend's scheme names.
type openFunc = func(ctx context.Context, u *url.URL, opts Options) (Storage, error)

var (
	mu          sync.RWMutex
	backends    = map[string]openFunc{}
	userSchemes = map[string]bool{} // schemes whose URLs name a user
)

// AcceptUser lets URLs of a registered scheme name a user, with no password
// (smb://user@host/share): Open then hands open the user name in u.User.
// Backends call it from init, after Register.
func AcceptUser(scheme string) {
	mu.Lock()
	defer mu.Unlock()
	userSchemes[scheme] = true
}

// Register makes a backend available to Open under a URL scheme. Backends
// call it from init; registering a scheme twice panics. Open hands open the
// parsed URL, which carries no password, nor a user name unless the scheme
// accepts one (AcceptUser); open's errors about the URL wrap ErrBadURL.
func Register(scheme string, open func(ctx context.Context, u *url.URL, opts Options) (Storage, error)) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := backends[scheme]; dup {
		panic("storage: Register called twice for scheme " + scheme)
	}
	backends[scheme] = open
}

// Open returns the storage a URL names, from the backend registered for its
// scheme: file:///path or
// s3://bucket/prefix?endpoint=host:port&region=R&insecure=true.
func Open(ctx context.Context, rawURL string, opts Options) (Storage, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("%w: none given: set --storage or REMORA_STORAGE (%s)", ErrBadURL, known())
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("%w %q: not a URL such as file:///path or s3://bucket/prefix; %s", ErrBadURL, RedactURL(rawURL), known())
	}
	mu.RLock()
	open, ok := backends[u.Scheme]
	user := userSchemes[u.Scheme]
	mu.RUnlock()
	if u.User != nil {
		_, pw := u.User.Password()
		switch {
		case user && pw:
			return nil, fmt.Errorf("%w %q: credentials do not belong in the URL; name only the user, and set the password variable (README: Storage URLs)", ErrBadURL, RedactURL(rawURL))
		case !user:
			return nil, fmt.Errorf("%w %q: credentials do not belong in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the variables the README names for the scheme", ErrBadURL, RedactURL(rawURL))
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w %q: unknown scheme %q; %s", ErrBadURL, RedactURL(rawURL), u.Scheme, known())
	}
	return open(ctx, u, opts)
}

// known says which schemes Open accepts: "want file:// or s3://".
func known() string {
	mu.RLock()
	schemes := make([]string, 0, len(backends))
	for s := range backends {
		schemes = append(schemes, s+"://")
	}
	mu.RUnlock()
	slices.Sort(schemes)
	switch n := len(schemes); n {
	case 0:
		return "no storage backend is linked into this program"
	case 1:
		return "want " + schemes[0]
	default:
		return "want " + strings.Join(schemes[:n-1], ", ") + " or " + schemes[n-1]
	}
}

// RedactURL hides whatever could be user info in a URL that failed to parse
// or carried it: everything between "//" (or the start) and the last "@".
// Over-masking an odd URL in an error is better than echoing a password.
func RedactURL(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := 0
	if i := strings.Index(s, "//"); i >= 0 && i < at {
		start = i + 2
	}
	return s[:start] + "xxxxx" + s[at:]
}

// CheckKey checks a key given to a Storage method: relative, slash-separated,
// with no empty, "." or ".." elements.
func CheckKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return fmt.Errorf("storage: invalid key %q", key)
	}
	for _, el := range strings.Split(key, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("storage: invalid key %q", key)
		}
	}
	return nil
}

// NotExist is the error for a missing key: it names the key and matches
// fs.ErrNotExist.
func NotExist(key string) error {
	return fmt.Errorf("%s: %w", key, fs.ErrNotExist)
}
