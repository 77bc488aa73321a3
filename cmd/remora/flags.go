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

	"github.com/dustin/go-humanize"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/prio"
	"remora.dev/remora/internal/redact"
	"remora.dev/remora/repo"
	"remora.dev/remora/repo/retention"
	"remora.dev/remora/sidecar"
	"remora.dev/remora/spec"
	"remora.dev/remora/storage"
)

// environment is what every command writes to.
type environment struct {
	stdout, stderr io.Writer
}

// envName is the environment twin of a flag: --dump-args is REMORA_DUMP_ARGS.
func envName(flagName string) string {
	if name, ok := envNames[flagName]; ok {
		return name
	}
	return "REMORA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envNames are the twins not named after their flag: a flag that takes a
// file is twinned with NAME_FILE, so that NAME can carry the content itself
// (as a Secret's key does).
var envNames = map[string]string{
	"signing-key": "REMORA_SIGNING_KEY_FILE",
	"verify-key":  "REMORA_VERIFY_KEY_FILE",
}

// Variables that carry a key itself rather than its file.
const (
	envSigningKey = "REMORA_SIGNING_KEY"
	envVerifyKey  = "REMORA_VERIFY_KEY"
)

// envRetentionMin is the retention floor. It has no flag: it comes from the
// storage Secret, and nothing a pod's author or a command line sets can go
// below it.
const envRetentionMin = "REMORA_RETENTION_MIN"

// retentionFloor reads REMORA_RETENTION_MIN; nil if unset.
func retentionFloor() (*retention.Policy, error) {
	v := strings.TrimSpace(os.Getenv(envRetentionMin))
	if v == "" {
		return nil, nil
	}
	p, err := retention.Parse(v)
	if err != nil {
		return nil, usagef("%s: %w", envRetentionMin, err)
	}
	return &p, nil
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

// gentle are --priority and --max-rate: how hard a backup may press on the
// database it reads (remora.dev/priority and remora.dev/max-rate).
type gentle struct {
	priority, maxRate string
}

// addFlags defines them; def is --priority's default (the agent's is empty:
// the annotation's, else low).
func (g *gentle) addFlags(fs *flag.FlagSet, def string) {
	stringFlag(fs, &g.priority, "priority", def, "CPU and I/O priority of the backup's work and tools: low (nice 10, best-effort I/O 7), idle (nice 19, idle I/O) or normal")
	stringFlag(fs, &g.maxRate, "max-rate", "", "cap on the bytes per second read from the database, as 50Mi or 200M (1Mi to 10Gi; empty: no cap)")
}

// parse reads them: the priority ("" when not given) and the rate (0: no
// cap).
func (g *gentle) parse() (prio.Priority, int64, error) {
	var p prio.Priority
	if v := strings.TrimSpace(g.priority); v != "" {
		var err error
		if p, err = prio.Parse(v); err != nil {
			return "", 0, usagef("--priority: %v", err)
		}
	}
	if v := strings.TrimSpace(g.maxRate); v != "" {
		r, err := spec.ParseMaxRate(v)
		if err != nil {
			return "", 0, usagef("--max-rate: %v", err)
		}
		return p, r, nil
	}
	return p, 0, nil
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
		return usage(err)
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
	signingKey string // file
	verifyKey  string // file
	storage    listFlag
	driver     string
	dsn        string
	namespace  string
	workload   string
	logFormat  string
	logLevel   string
	method     string // logical or physical; empty in a list: every method
}

func (c *common) addFlags(fs *flag.FlagSet, withDSN bool) {
	host, _ := os.Hostname()
	c.storage.values = strings.Fields(os.Getenv(sidecar.EnvStorage))
	if len(c.storage.values) == 0 {
		// In a sidecar, the chart's default when the storage Secret names none.
		c.storage.values = strings.Fields(os.Getenv(sidecar.EnvDefaultStorage))
	}
	fs.Var(&c.storage, "storage", "where backups are kept: file:///path, s3://bucket/prefix?endpoint=host:port&region=R, sftp://, webdav(s)://, ftp(s)://, smb://, azblob://, gs:// (README: Storage URLs); repeat (or separate with spaces) for several, each with its own retention after a '#'")
	stringFlag(fs, &c.driver, "driver", "", "database kind: "+strings.Join(drivers.Names(), ", "))
	if withDSN {
		stringFlag(fs, &c.dsn, "dsn", "", "database URL, e.g. postgres://user@host:5432/postgres (password: "+sidecar.EnvDBPassword+", PGPASSWORD or the URL)")
	}
	stringFlag(fs, &c.namespace, "namespace", "default", "namespace part of the storage layout (set by the webhook in a pod)")
	stringFlag(fs, &c.workload, "workload", host, "workload part of the storage layout: StatefulSet pod (db-0) or Deployment name")
	stringFlag(fs, &c.logFormat, "log-format", "text", "log format: text or json")
	stringFlag(fs, &c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	stringFlag(fs, &c.signingKey, "signing-key", "", "Ed25519 private key (PEM, from `remora keygen`) that signs manifests; its public half checks them ("+envSigningKey+" may hold the key itself)")
	stringFlag(fs, &c.verifyKey, "verify-key", "", "Ed25519 public key(s) (PEM) that check signatures where the signing key is not at hand ("+envVerifyKey+" may hold the key itself)")
}

// keys loads the signing key and the verify keys; without any, signatures
// are neither made nor checked.
func (c *common) keys() (*repo.SigningKey, repo.Trust, error) {
	signer, keys, err := repo.LoadKeys(c.signingKey, os.Getenv(envSigningKey), c.verifyKey, os.Getenv(envVerifyKey))
	if err != nil {
		return nil, repo.Trust{}, usage(err)
	}
	return signer, repo.Trust{Keys: keys}, nil
}

// warnUnchecked says, after a verify or restore that succeeded, that without
// a key the storage was trusted.
func warnUnchecked(log *slog.Logger, trust repo.Trust) {
	if !trust.Checks() {
		log.Warn("signatures were not checked: no --verify-key or --signing-key is set, so anyone who can write to the storage could have altered these backups")
	}
}

// credentials completes the DSN with REMORA_DB_USER and REMORA_DB_PASSWORD
// when it names no user or password (the webhook passes the database
// container's credentials so; any character is safe in them, where a URL
// would need escaping), and masks the secrets in all output.
func (c *common) credentials() {
	c.dsn = withCredentials(c.dsn, os.Getenv(sidecar.EnvDBUser), os.Getenv(sidecar.EnvDBPassword))
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
		return nil, usagef("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch c.logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(e.stderr, opts))
	case "json":
		log = slog.New(slog.NewJSONHandler(e.stderr, opts))
	default:
		return nil, usagef("--log-format %q: want text or json", c.logFormat)
	}
	return log, nil
}

// identityFlag defines --identity, the age identity file that decrypts
// encrypted backups (also REMORA_IDENTITY or AGE_IDENTITY_FILE).
func identityFlag(fs *flag.FlagSet, p *string) {
	stringFlag(fs, p, "identity", os.Getenv("AGE_IDENTITY_FILE"), "age identity file that decrypts encrypted backups (also AGE_IDENTITY_FILE)")
}

// allowUnsignedFlag defines --allow-unsigned, with no environment twin: an
// environment must not turn the check off.
func allowUnsignedFlag(fs *flag.FlagSet, p *bool) {
	choiceBool(fs, p, "allow-unsigned", "accept a backup that carries no signature (one made before signing was set up); a wrong signature is never accepted")
}

func (c *common) scope() repo.Scope {
	return repo.Scope{Namespace: c.namespace, Workload: c.workload, Driver: c.driver, Method: c.method}
}

// methodFlag defines --method for the commands that take backups, with its
// twin REMORA_METHOD.
func (c *common) methodFlag(fs *flag.FlagSet, def string) {
	stringFlag(fs, &c.method, "method", def, "backup method: logical (dumps) or physical (PostgreSQL base backups); remora.dev/method overrides it in a pod")
}

// methodChoice defines --method for the commands that pick backups: no
// environment twin, so that a sidecar's REMORA_METHOD does not hide the
// other method's backups.
func (c *common) methodChoice(fs *flag.FlagSet) {
	choiceString(fs, &c.method, "method", "only backups of this method: logical or physical (default: both)")
}

// checkMethod checks --method against the driver (physical is PostgreSQL's).
func (c *common) checkMethod() error {
	if c.method == "" {
		return nil
	}
	if c.method != drivers.MethodLogical && c.method != drivers.MethodPhysical {
		return usagef("--method %q: want logical or physical", c.method)
	}
	if c.driver != "" {
		if err := drivers.CheckMethod(c.driver, c.method); err != nil {
			return usage(err)
		}
	}
	return nil
}

// openStorage opens the storage that list, verify and restore read: the
// first one given.
func (c *common) openStorage(ctx context.Context, e *environment, log *slog.Logger) (storage.Storage, error) {
	var raw string
	if len(c.storage.values) > 0 {
		raw, _, _ = repo.SplitDestination(c.storage.values[0])
	}
	st, err := storage.Open(ctx, raw, storage.Options{Logger: log})
	if err != nil {
		return nil, usage(err)
	}
	if len(c.storage.values) > 1 {
		fmt.Fprintf(e.stderr, "reading %s, the first of %d storages (--storage picks one)\n", st, len(c.storage.values))
	}
	return st, nil
}

// list finds the backups of the scope, checking the storage first so that a
// wrong bucket or key is reported as such rather than as "no backups".
func (c *common) list(ctx context.Context, st storage.Storage, trust repo.Trust) ([]repo.Entry, error) {
	if err := c.scope().Validate(); err != nil {
		return nil, usage(err)
	}
	if err := c.checkMethod(); err != nil {
		return nil, err
	}
	if err := st.Check(ctx); err != nil {
		return nil, err
	}
	return repo.List(ctx, st, c.scope(), trust)
}

// parseTime reads --before: RFC 3339, a backup ID, or a date and time in UTC
// ("2026-11-24", "2026-11-24 13:00", "2026-11-24T13:00:05").
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, repo.IDFormat, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--before %q: want a time such as 2026-11-24T13:00:00Z, 2026-11-24 13:00 (UTC) or a backup ID", s)
}

// humanBytes prints a size in binary units.
func humanBytes(n int64) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-n))
	}
	return humanize.IBytes(uint64(n))
}
