// Package drivers defines what Remora needs from a kind of database: the list
// of objects a backup holds, a stream for each, and a way to load one back.
// Each kind lives in its own package and registers itself here.
package drivers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// Object kinds.
const (
	KindDatabase = "database" // one database's dump
	KindGlobals  = "globals"  // server-wide objects: roles, tablespaces
	KindFiles    = "files"    // a tar archive of paths
)

// Object is one stream of a backup.
type Object struct {
	Name     string            `json:"name"`               // file name in the backup, without the compression suffix
	Kind     string            `json:"kind"`               // KindDatabase, KindGlobals or KindFiles
	Database string            `json:"database,omitempty"` // for KindDatabase; "files" for KindFiles
	Format   string            `json:"format"`             // e.g. "pg_dump custom", "sql"
	Meta     map[string]string `json:"meta,omitempty"`     // what the driver needs to restore it (owner, encoding, ...)
}

// Plan is what one backup of a server will hold.
type Plan struct {
	ServerVersion string
	Tools         map[string]string // tool name -> version, e.g. "pg_dump": "15.18"
	Objects       []Object
	Warnings      []string // things the operator should know, e.g. role passwords left out
}

// RestoreOptions say where and how an object is loaded.
type RestoreOptions struct {
	// Into is the database to restore into; empty means the object's own.
	Into string
	// Yes allows overwriting a database that exists.
	Yes bool
	// Warn, if set, receives what the operator should know but that does
	// not fail the restore.
	Warn func(msg string)
}

// Target is the database (or directory) obj is restored into.
func (o RestoreOptions) Target(obj Object) string {
	if o.Into != "" {
		return o.Into
	}
	return obj.Database
}

// Warnf reports a warning through o.Warn, if set.
func (o RestoreOptions) Warnf(format string, a ...any) {
	if o.Warn != nil {
		o.Warn(fmt.Sprintf(format, a...))
	}
}

// Driver dumps and restores one kind of database server.
type Driver interface {
	// Plan connects to the server and lists the objects a backup holds.
	Plan(ctx context.Context) (*Plan, error)
	// Dump writes the complete dump of obj to w. A dump that did not run to
	// its end must return an error: it never looks like a short success.
	Dump(ctx context.Context, obj Object, w io.Writer) error
	// CheckRestore checks, before anything is changed, that the objects can be
	// restored with opts: the server answers and no database would be
	// overwritten without opts.Yes.
	CheckRestore(ctx context.Context, objs []Object, opts RestoreOptions) error
	// Restore loads obj from r. If r fails, or the load fails, the target is
	// left as it was where the database allows it (a database created for
	// the restore is dropped again; an existing one is changed in a single
	// transaction).
	Restore(ctx context.Context, obj Object, r io.Reader, opts RestoreOptions) error
}

// Roler is a driver that can tell whether its server is a primary or a
// replica, for remora.dev/member.
type Roler interface {
	// Replica reports whether the server is a replica (read-only follower),
	// or ErrNoRole when this kind of server has no such roles.
	Replica(ctx context.Context) (bool, error)
}

// ErrNoRole is returned by a Roler whose server cannot tell a primary from a
// replica.
var ErrNoRole = errors.New("this driver cannot tell a primary from a replica")

// Config is what every driver is built from.
type Config struct {
	DSN       string   // where the server is, as a URL; may hold the password
	Databases []string // databases to back up; empty means all
	Paths     []string // files and directories to archive (the files driver, or extra files for any driver)
	DumpArgs  []string // extra flags for the dump tool, checked against the driver's allowlist
	// RestoreFiles makes a driver other than files restore files objects
	// too (a backup taken with extra Paths), though it has no Paths.
	RestoreFiles bool
	// Method is how backups are taken: MethodLogical (when empty) or
	// MethodPhysical, for the drivers that RegisterPhysical.
	Method string
}

// Files is the name of the driver that archives paths; every other driver
// hands the files objects of a backup to it.
const Files = "files"

// ErrNoDSN is returned by New for a database driver given no DSN.
var ErrNoDSN = errors.New("no database given: set --dsn or REMORA_DSN")

// Factory builds a driver from its configuration.
type Factory func(Config) (Driver, error)

var (
	mu        sync.Mutex
	factories = map[string]Factory{}
)

// Register makes a driver available by name. It panics on a duplicate name.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[name]; dup {
		panic("drivers: Register called twice for " + name)
	}
	factories[name] = f
}

// Names lists the registered drivers.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	var out []string
	for n := range factories {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New builds the named driver. A database driver given Paths (or
// RestoreFiles) also archives those paths in every backup (or restores a
// backup's files objects) through the files driver.
func New(name string, cfg Config) (Driver, error) {
	d, err := build(name, cfg)
	if err != nil || name == Files || len(cfg.Paths) == 0 && !cfg.RestoreFiles {
		return d, err
	}
	f, err := build(Files, Config{Paths: cfg.Paths})
	if err != nil {
		return nil, err
	}
	return &withFiles{db: d, files: f, dump: len(cfg.Paths) > 0}, nil
}

func build(name string, cfg Config) (Driver, error) {
	mu.Lock()
	f := factories[name]
	mu.Unlock()
	switch {
	case f == nil && name == "":
		return nil, fmt.Errorf("no driver given: set --driver or REMORA_DRIVER to one of: %s", strings.Join(Names(), ", "))
	case f == nil:
		return nil, fmt.Errorf("unknown driver %q: want one of: %s", name, strings.Join(Names(), ", "))
	case name != Files && cfg.DSN == "":
		return nil, ErrNoDSN
	}
	if err := CheckMethod(name, cfg.Method); err != nil {
		return nil, err
	}
	return f(cfg)
}

// ParseList reads a comma list, dropping empty items.
func ParseList(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// ParseDatabases reads a --databases value: "all" (or empty) or a comma list.
func ParseDatabases(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		return nil
	}
	return ParseList(s)
}

// ObjectFileName makes a database name safe as one element of a storage key:
// letters, digits, '_', '-' and '.' are kept, every other byte becomes %XX.
func ObjectFileName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
