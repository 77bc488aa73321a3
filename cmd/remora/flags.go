package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"remora.dev/remora/agent/backup"
	"remora.dev/remora/agent/retention"
	"remora.dev/remora/agent/storage"
	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/redact"
)

// environment is what every command writes to.
type environment struct {
	stdout, stderr io.Writer
}

// envName is the environment twin of a flag: --dump-args is REMORA_DUMP_ARGS.
func envName(flagName string) string {
	return "REMORA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet makes a flag set whose usage names the environment twins.
func (e *environment) newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: remora %s\n\nFlags (those with a [VARIABLE] are also read from it):\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if d := staticDefaults[f.Name]; d != "" {
				def = fmt.Sprintf(" (default %q)", d)
			}
			env := "  [" + envName(f.Name) + "]"
			if invocationFlags[f.Name] {
				env = ""
			}
			fmt.Fprintf(e.stderr, "  --%s%s\n      %s%s\n", f.Name, env, f.Usage, def)
		})
	}
	return fs
}

// staticDefaults are the defaults usage shows: never a value taken from the
// environment, which may hold a password.
var staticDefaults = map[string]string{}

// stringFlag defines a string flag whose default comes from its environment twin.
func stringFlag(fs *flag.FlagSet, p *string, name, def, usage string) {
	staticDefaults[name] = def
	if v, ok := os.LookupEnv(envName(name)); ok {
		def = v
	}
	fs.StringVar(p, name, def, usage)
}

// invocationFlags choose what one command does (which backup, --yes, ...).
// They have no environment twin, so that no environment can make a restore
// pick another backup or overwrite a database unasked.
var invocationFlags = map[string]bool{}

// choiceString defines a string flag with no environment twin.
func choiceString(fs *flag.FlagSet, p *string, name, usage string) {
	invocationFlags[name] = true
	fs.StringVar(p, name, "", usage)
}

// choiceBool defines a bool flag with no environment twin.
func choiceBool(fs *flag.FlagSet, p *bool, name, usage string) {
	invocationFlags[name] = true
	fs.BoolVar(p, name, false, usage)
}

// parse parses args and maps flag errors to usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

// parseInterspersed parses flags that may come before or after positional
// arguments (remora restore ID --yes) and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag is a flag that may be repeated; its default comes from an
// environment variable whose values are separated by white space.
type listFlag struct {
	values []string
	set    bool
}

func (l *listFlag) String() string { return strings.Join(l.values, " ") }

func (l *listFlag) Set(v string) error {
	if !l.set {
		l.values, l.set = nil, true
	}
	l.values = append(l.values, v)
	return nil
}

// common are the flags every storage-using command takes.
type common struct {
	storage   listFlag
	driver    string
	dsn       string
	namespace string
	workload  string
	logFormat string
	logLevel  string
}

func (c *common) addFlags(fs *flag.FlagSet, withDSN bool) {
	host, _ := os.Hostname()
	c.storage.values = strings.Fields(os.Getenv(envName("storage")))
	if len(c.storage.values) == 0 {
		// In a sidecar, the chart's default when the storage Secret names none.
		c.storage.values = strings.Fields(os.Getenv("REMORA_DEFAULT_STORAGE"))
	}
	fs.Var(&c.storage, "storage", "where backups are kept: file:///path or s3://bucket/prefix?endpoint=host:port&region=R; repeat (or separate with spaces) for several, each with its own retention after a '#'")
	stringFlag(fs, &c.driver, "driver", "", "database kind: "+strings.Join(drivers.Names(), ", "))
	if withDSN {
		stringFlag(fs, &c.dsn, "dsn", "", "database URL, e.g. postgres://user@host:5432/postgres (password: PGPASSWORD or the URL)")
	}
	stringFlag(fs, &c.namespace, "namespace", "default", "namespace part of the storage layout (set by the webhook in a pod)")
	stringFlag(fs, &c.workload, "workload", host, "workload part of the storage layout: StatefulSet pod (db-0) or Deployment name")
	stringFlag(fs, &c.logFormat, "log-format", "text", "log format: text or json")
	stringFlag(fs, &c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// credentials completes the DSN with REMORA_DB_USER and REMORA_DB_PASSWORD
// when it names no user or password (the webhook passes the database
// container's credentials so; any character is safe in them, where a URL
// would need escaping), and masks the secrets in all output.
func (c *common) credentials() {
	c.dsn = withCredentials(c.dsn, os.Getenv("REMORA_DB_USER"), os.Getenv("REMORA_DB_PASSWORD"))
	redact.AddURLPassword(c.dsn)
}

// withCredentials sets the user and password of a URL-style DSN where it has
// none. Other DSNs (PostgreSQL's key=value form) are left as they are.
func withCredentials(dsn, user, password string) string {
	if dsn == "" || (user == "" && password == "") || !strings.Contains(dsn, "://") {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn // the driver reports the bad DSN
	}
	name, pw := "", ""
	has := false
	if u.User != nil {
		name = u.User.Username()
		pw, has = u.User.Password()
	}
	if name == "" {
		name = user
	}
	if !has && password != "" {
		pw, has = password, true
	}
	switch {
	case has:
		u.User = url.UserPassword(name, pw)
	case name != "":
		u.User = url.User(name)
	}
	return u.String()
}

func (c *common) logger(e *environment) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", c.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch c.logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(e.stderr, opts))
	case "json":
		log = slog.New(slog.NewJSONHandler(e.stderr, opts))
	default:
		return nil, usageError{fmt.Sprintf("--log-format %q: want text or json", c.logFormat)}
	}
	// Packages that log on their own (the storage's retries) use the same
	// format, level and masked output.
	slog.SetDefault(log)
	return log, nil
}

// identityFlag defines --identity, the age identity file that decrypts
// encrypted backups (also REMORA_IDENTITY or AGE_IDENTITY_FILE).
func identityFlag(fs *flag.FlagSet, p *string) {
	stringFlag(fs, p, "identity", os.Getenv("AGE_IDENTITY_FILE"), "age identity file that decrypts encrypted backups (also AGE_IDENTITY_FILE)")
}

func (c *common) scope() backup.Scope {
	return backup.Scope{Namespace: c.namespace, Workload: c.workload, Driver: c.driver}
}

// openStorage opens the storage that list, verify and restore read: the
// first one given.
func (c *common) openStorage(ctx context.Context, e *environment) (storage.Storage, error) {
	if len(c.storage.values) == 0 {
		_, err := storage.Open(ctx, "")
		return nil, usageError{err.Error()}
	}
	raw, _, _ := strings.Cut(c.storage.values[0], "#")
	st, err := storage.Open(ctx, raw)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	if len(c.storage.values) > 1 {
		fmt.Fprintf(e.stderr, "reading %s, the first of %d storages (--storage picks one)\n", st, len(c.storage.values))
	}
	return st, nil
}

// destinations opens every storage a backup goes to, each with its
// retention: its own after a '#' (file:///backups#days=6), else def.
func (c *common) destinations(ctx context.Context, def string) ([]backup.Destination, error) {
	if len(c.storage.values) == 0 {
		_, err := storage.Open(ctx, "")
		return nil, usageError{err.Error()}
	}
	var out []backup.Destination
	for _, v := range c.storage.values {
		raw, spec, hasOwn := strings.Cut(v, "#")
		if !hasOwn {
			spec = def
		}
		st, err := storage.Open(ctx, raw)
		if err != nil {
			return nil, usageError{err.Error()}
		}
		d := backup.Destination{Storage: st}
		if spec != "" && spec != "none" {
			p, err := retention.Parse(spec)
			if err != nil {
				return nil, usageError{fmt.Sprintf("storage %s: %v", st, err)}
			}
			d.Retention = &p
		}
		out = append(out, d)
	}
	return out, nil
}

// list finds the backups of the scope, checking the storage first so that a
// wrong bucket or key is reported as such rather than as "no backups".
func (c *common) list(ctx context.Context, st storage.Storage) ([]backup.Entry, error) {
	if err := c.scope().Validate(); err != nil {
		return nil, usageError{err.Error()}
	}
	if err := st.Check(ctx); err != nil {
		return nil, err
	}
	return backup.List(ctx, st, c.scope())
}

// parseTime reads --before: RFC 3339, a backup ID, or a date and time in UTC
// ("2026-11-24", "2026-11-24 13:00", "2026-11-24T13:00:05").
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, backup.IDFormat, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--before %q: want a time such as 2026-11-24T13:00:00Z, 2026-11-24 13:00 (UTC) or a backup ID", s)
}

// humanBytes prints a size in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
