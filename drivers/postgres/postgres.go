// Package postgres backs up PostgreSQL servers with pg_dump (one custom-format
// archive per database) and pg_dumpall --globals-only (roles, tablespaces),
// and restores them with pg_restore and psql.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/errs"
)

// Name is the driver's name in --driver and remora.dev/driver.
const Name = "postgres"

// Object formats.
const (
	FormatCustom = "pg_dump custom"
	FormatSQL    = "sql"
)

func init() {
	drivers.Register(Name, func(cfg drivers.Config) (drivers.Driver, error) { return New(cfg) })
}

// Driver talks to one PostgreSQL server.
type Driver struct {
	dsn       string   // as given, for pgx; may hold the password
	conn      *url.URL // without the password, for the tools' --dbname
	password  string   // from the DSN or PGPASSWORD; given to the tools in a password file
	adminDB   string   // the DSN's database, used for server-wide work
	databases []string // to back up; nil means all
	dumpArgs  []string // extra pg_dump flags
	method    string   // drivers.MethodPhysical: base backups; else dumps
}

// dumpFlags are the pg_dump flags --dump-args accepts: what to include and
// how. Flags that write files (--file), change the format, the connection or
// the identity (--host, --role, ...) or read files (--filter) are not here.
var dumpFlags = []drivers.Flag{
	{Long: "schema", Short: 'n', Value: true}, {Long: "exclude-schema", Short: 'N', Value: true},
	{Long: "table", Short: 't', Value: true}, {Long: "exclude-table", Short: 'T', Value: true},
	{Long: "exclude-table-data", Value: true}, {Long: "exclude-table-and-children", Value: true},
	{Long: "exclude-table-data-and-children", Value: true}, {Long: "extension", Short: 'e', Value: true},
	{Long: "exclude-extension", Value: true}, {Long: "data-only", Short: 'a'}, {Long: "schema-only", Short: 's'},
	{Long: "no-owner", Short: 'O'}, {Long: "no-privileges", Short: 'x'}, {Long: "no-acl"}, {Long: "no-comments"},
	{Long: "no-publications"}, {Long: "no-subscriptions"}, {Long: "no-security-labels"}, {Long: "no-tablespaces"},
	{Long: "no-toast-compression"}, {Long: "no-unlogged-table-data"}, {Long: "no-table-access-method"},
	{Long: "blobs", Short: 'b'}, {Long: "no-blobs", Short: 'B'}, {Long: "large-objects"}, {Long: "no-large-objects"},
	{Long: "lock-wait-timeout", Value: true}, {Long: "extra-float-digits", Value: true}, {Long: "enable-row-security"},
	{Long: "quote-all-identifiers"}, {Long: "serializable-deferrable"}, {Long: "load-via-partition-root"},
	{Long: "section", Value: true}, {Long: "strict-names"}, {Long: "disable-triggers"}, {Long: "encoding", Short: 'E', Value: true},
	{Long: "use-set-session-authorization"}, {Long: "verbose", Short: 'v'},
}

// New checks the DSN: postgres://user[:password]@host[:port]/[db][?host=/socket/dir&sslmode=...].
func New(cfg drivers.Config) (*Driver, error) {
	u, err := url.Parse(cfg.DSN)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("postgres: the DSN must be a URL such as postgres://user@host:5432/db or postgres://user@/db?host=/var/run/postgresql")
	}
	if err := drivers.CheckArgs("pg_dump", cfg.DumpArgs, dumpFlags); err != nil {
		return nil, err
	}
	d := &Driver{dsn: cfg.DSN, databases: cfg.Databases, dumpArgs: cfg.DumpArgs, method: cfg.Method}
	if u.User != nil {
		d.password, _ = u.User.Password()
		u.User = url.User(u.User.Username())
	}
	d.adminDB = strings.TrimPrefix(u.Path, "/")
	if d.adminDB == "" {
		d.adminDB = "postgres"
	}
	q := u.Query()
	if q.Has("password") { // libpq's URI parameter: never in a tool's --dbname, where ps shows it
		d.password = q.Get("password")
		q.Del("password")
		u.RawQuery = q.Encode()
	}
	if q.Get("application_name") == "" {
		q.Set("application_name", "remora")
		u.RawQuery = q.Encode()
	}
	d.conn = u
	if d.password == "" {
		d.password = os.Getenv("PGPASSWORD") // libpq's order: the DSN's password, then PGPASSWORD
	}
	if strings.ContainsAny(d.password, "\r\n") {
		return nil, errors.New("postgres: the password holds a line break, which libpq's password file cannot hold: change the password")
	}
	return d, nil
}

// dbURL is the connection URL, without password, for database db.
func (d *Driver) dbURL(db string) string {
	u := *d.conn
	u.Path = "/" + db
	u.RawPath = "/" + url.PathEscape(db)
	return u.String()
}

// libpqEnv are the variables of Remora's environment the tools get beside the
// common ones: libpq's own (PGSSLMODE, PGSSLROOTCERT, PGPASSFILE, PGSERVICE,
// ...), which an operator may set for them; never PGPASSWORD (neverEnv).
var libpqEnv = []string{"PG*"}

// env is the environment for the tools: libpq's variables and no endless
// wait for a server that does not answer.
func (d *Driver) env() []string {
	var set []string
	if os.Getenv("PGCONNECT_TIMEOUT") == "" {
		set = append(set, "PGCONNECT_TIMEOUT=15")
	}
	return drivers.ToolEnv(libpqEnv, set...)
}

func (d *Driver) tool(name string, args ...string) drivers.Command {
	path := name
	if dir := os.Getenv("REMORA_PG_BIN"); dir != "" {
		path = dir + "/" + name
	} else if p, err := exec.LookPath(name); err == nil {
		path = p
	}
	return drivers.Command{Path: path, Args: args, Env: d.env(), Secret: d.passfile()}
}

// passfile is the password in a libpq password file (PGPASSFILE) for every
// host, port, database and user; nil without a password, when the tools read
// the operator's own (~/.pgpass or PGPASSFILE).
func (d *Driver) passfile() *drivers.SecretFile {
	if d.password == "" {
		return nil
	}
	return &drivers.SecretFile{Content: "*:*:*:*:" + passfileEscaper.Replace(d.password) + "\n", Env: "PGPASSFILE"}
}

// passfileEscaper escapes what ends or escapes a field of a password file.
var passfileEscaper = strings.NewReplacer(`\`, `\\`, `:`, `\:`)

// connect opens a connection to database db and explains a failure.
func (d *Driver) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(d.dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: bad DSN: %v", scrub(err, d.password))
	}
	cfg.Database = db
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "remora"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn, nil
	}
	where := cfg.Host
	if !strings.HasPrefix(where, "/") {
		where = fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return nil, fmt.Errorf("postgres %s: login as %q refused (%s): check the user and password (DSN or PGPASSWORD)", where, cfg.User, pgErr.Message)
		case "3D000":
			return nil, fmt.Errorf("postgres %s: database %q does not exist: fix the DSN's database", where, db)
		}
		return nil, fmt.Errorf("postgres %s: %s (SQLSTATE %s)", where, pgErr.Message, pgErr.Code)
	}
	return nil, fmt.Errorf("postgres %s: cannot connect: %v: check the DSN and that the server is running", where, scrub(errs.Root(err), d.password))
}

// scrub removes the password from a message that might quote it.
func scrub(err error, password string) string {
	if password == "" {
		return err.Error()
	}
	return strings.ReplaceAll(err.Error(), password, "xxxxx")
}

var versionRE = regexp.MustCompile(`\b(\d+)(?:\.(\d+))?`)

// toolVersion runs "<tool> --version" and returns the version and its major number.
func (d *Driver) toolVersion(ctx context.Context, name string) (string, int, error) {
	out, err := d.tool(name, "--version").Output(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("postgres: %s not usable: %v: install the PostgreSQL client tools", name, err)
	}
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", 0, fmt.Errorf("postgres: cannot read the version of %s from %q", name, strings.TrimSpace(out))
	}
	major, _ := strconv.Atoi(m[1])
	return m[0], major, nil
}

func (d *Driver) Plan(ctx context.Context) (*drivers.Plan, error) {
	if d.method == drivers.MethodPhysical {
		return d.physicalPlan(ctx)
	}
	conn, err := d.connect(ctx, d.adminDB)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	plan := &drivers.Plan{Tools: map[string]string{}}
	var versionNum int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version'), current_setting('server_version_num')::int").Scan(&plan.ServerVersion, &versionNum); err != nil {
		return nil, fmt.Errorf("postgres: read server version: %w", err)
	}
	for _, tool := range []string{"pg_dump", "pg_dumpall"} {
		v, major, err := d.toolVersion(ctx, tool)
		if err != nil {
			return nil, err
		}
		if major < versionNum/10000 {
			return nil, fmt.Errorf("postgres: %s %s cannot dump a PostgreSQL %s server: install the client tools of version %d or newer", tool, v, plan.ServerVersion, versionNum/10000)
		}
		plan.Tools[tool] = v
	}

	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		return nil, fmt.Errorf("postgres: read role: %w", err)
	}
	globals := drivers.Object{Name: "globals.sql", Kind: drivers.KindGlobals, Format: FormatSQL}
	if !super {
		globals.Meta = map[string]string{"no-role-passwords": "true"}
		plan.Warnings = append(plan.Warnings, "the backup user is not a superuser: roles are saved without their passwords")
	}
	plan.Objects = append(plan.Objects, globals)

	rows, err := conn.Query(ctx, `SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype
		FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list databases: %w", err)
	}
	found := map[string]bool{}
	var all []string
	for rows.Next() {
		var name, owner, enc, collate, ctype string
		if err := rows.Scan(&name, &owner, &enc, &collate, &ctype); err != nil {
			return nil, fmt.Errorf("postgres: list databases: %w", err)
		}
		all = append(all, name)
		if d.databases != nil && !slices.Contains(d.databases, name) {
			continue
		}
		found[name] = true
		plan.Objects = append(plan.Objects, drivers.Object{
			Name: "databases/" + drivers.ObjectFileName(name) + ".dump", Kind: drivers.KindDatabase, Database: name, Format: FormatCustom,
			Meta: map[string]string{"owner": owner, "encoding": enc, "lc_collate": collate, "lc_ctype": ctype},
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list databases: %w", err)
	}
	for _, want := range d.databases {
		if !found[want] {
			return nil, fmt.Errorf("postgres: database %q not found on the server (it has: %s): fix --databases", want, strings.Join(all, ", "))
		}
	}
	return plan, nil
}

func (d *Driver) Dump(ctx context.Context, obj drivers.Object, w io.Writer) error {
	switch obj.Kind {
	case drivers.KindGlobals:
		args := []string{"--globals-only", "--no-password", "--dbname=" + d.dbURL(d.adminDB)}
		if obj.Meta["no-role-passwords"] == "true" {
			args = append(args, "--no-role-passwords")
		}
		return d.tool("pg_dumpall", args...).Run(ctx, nil, w)
	case drivers.KindDatabase:
		_, err := d.dumpDatabase(ctx, obj, w)
		return err
	case drivers.KindPhysical:
		_, err := d.baseBackup(ctx, w)
		return err
	}
	return fmt.Errorf("postgres: unknown object kind %q", obj.Kind)
}

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// exists reports whether a database exists.
func databaseExists(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok)
	return ok, err
}

func (d *Driver) CheckRestore(ctx context.Context, objs []drivers.Object, opts drivers.RestoreOptions) error {
	conn, err := d.connect(ctx, d.adminDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, tool := range []string{"pg_restore", "psql"} {
		if _, _, err := d.toolVersion(ctx, tool); err != nil {
			return err
		}
	}
	for _, obj := range objs {
		switch obj.Kind {
		case drivers.KindGlobals:
			if !opts.Yes {
				return fmt.Errorf("postgres: restoring roles and tablespaces changes the server: add --yes")
			}
		case drivers.KindDatabase:
			name := opts.Target(obj)
			ok, err := databaseExists(ctx, conn, name)
			if err != nil {
				return fmt.Errorf("postgres: %w", err)
			}
			if ok && !opts.Yes {
				return fmt.Errorf("postgres: database %q exists and the restore would overwrite it: add --yes, or restore with --into NEW_NAME", name)
			}
		}
	}
	return nil
}

func (d *Driver) Restore(ctx context.Context, obj drivers.Object, r io.Reader, opts drivers.RestoreOptions) error {
	switch obj.Kind {
	case drivers.KindGlobals:
		return d.restoreGlobals(ctx, r)
	case drivers.KindDatabase:
		return d.restoreDatabase(ctx, obj, r, opts)
	case drivers.KindPhysical:
		return errors.New("postgres: a physical backup is restored into an empty data directory (remora restore --data-dir DIR), not into a running server")
	}
	return fmt.Errorf("postgres: unknown object kind %q", obj.Kind)
}

// restoreDatabase loads a custom-format archive. A database that does not
// exist is created like the original (owner, encoding, locale) and dropped
// again if the load fails; an existing one is cleaned and loaded in a single
// transaction, so a failure changes nothing.
func (d *Driver) restoreDatabase(ctx context.Context, obj drivers.Object, r io.Reader, opts drivers.RestoreOptions) error {
	name := opts.Target(obj)
	conn, err := d.connect(ctx, d.adminDB)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	exists, err := databaseExists(ctx, conn, name)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	args := []string{"--no-password", "--exit-on-error", "--dbname=" + d.dbURL(name)}
	if exists {
		if !opts.Yes {
			return fmt.Errorf("postgres: database %q exists: add --yes to overwrite it, or restore with --into NEW_NAME", name)
		}
		args = append(args, "--clean", "--if-exists", "--single-transaction")
	} else {
		if err := createDatabase(ctx, conn, name, obj.Meta); err != nil {
			return err
		}
	}
	err = d.tool("pg_restore", args...).Run(ctx, r, nil)
	if err != nil && !exists {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, derr := conn.Exec(dctx, "DROP DATABASE IF EXISTS "+quoteIdent(name)+" WITH (FORCE)"); derr != nil {
			return fmt.Errorf("postgres: restore into %q failed: %w; dropping the half-restored database also failed: %v", name, err, derr)
		}
		return fmt.Errorf("postgres: restore into %q failed (the new database was dropped): %w", name, err)
	}
	if err != nil {
		hint := ""
		if drivers.ToolSays(err, "max_locks_per_transaction") {
			hint = " (the restore runs in one transaction: raise max_locks_per_transaction for databases with very many tables)"
		}
		return fmt.Errorf("postgres: restore into %q failed, nothing was changed: %w%s", name, err, hint)
	}
	return nil
}

// createDatabase creates a database like the one saved: from template0, with
// its encoding and locale, owned by its owner when that role exists.
func createDatabase(ctx context.Context, conn *pgx.Conn, name string, meta map[string]string) error {
	sql := "CREATE DATABASE " + quoteIdent(name) + " TEMPLATE template0"
	if enc := meta["encoding"]; enc != "" {
		sql += " ENCODING " + quoteLiteral(enc)
	}
	if c := meta["lc_collate"]; c != "" {
		sql += " LC_COLLATE " + quoteLiteral(c)
	}
	if c := meta["lc_ctype"]; c != "" {
		sql += " LC_CTYPE " + quoteLiteral(c)
	}
	if owner := meta["owner"]; owner != "" {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", owner).Scan(&ok); err == nil && ok {
			sql += " OWNER " + quoteIdent(owner)
		}
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("postgres: create database %q: %w", name, err)
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// alreadyExists matches psql's complaint about a role that is there already,
// which a globals restore onto a live server expects.
var alreadyExists = regexp.MustCompile(`ERROR:\s+role ".*" already exists`)

// restoreGlobals runs the pg_dumpall script through psql. Roles that exist
// already are expected (their attributes are still set by the script's ALTER
// ROLE); any other error fails the restore.
func (d *Driver) restoreGlobals(ctx context.Context, r io.Reader) error {
	errs := &errorLines{}
	cmd := d.tool("psql", "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=0", "--file=-", "--dbname="+d.dbURL(d.adminDB))
	cmd.Stderr = errs
	if err := cmd.Run(ctx, r, io.Discard); err != nil {
		return fmt.Errorf("postgres: restore roles and tablespaces: %w", err)
	}
	if errs.n > 0 {
		return fmt.Errorf("postgres: restore roles and tablespaces: %d statements failed: %s", errs.n, strings.Join(errs.first, " | "))
	}
	return nil
}

// errorLines counts psql's ERROR lines other than "role already exists" and
// keeps the first few.
type errorLines struct {
	partial []byte
	n       int
	first   []string
}

func (e *errorLines) Write(p []byte) (int, error) {
	e.partial = append(e.partial, p...)
	for {
		i := slices.Index(e.partial, '\n')
		if i < 0 {
			break
		}
		line := string(e.partial[:i])
		e.partial = e.partial[i+1:]
		if strings.Contains(line, "ERROR:") && !alreadyExists.MatchString(line) {
			e.n++
			if len(e.first) < 5 {
				e.first = append(e.first, strings.TrimSpace(line))
			}
		}
	}
	return len(p), nil
}

// Replica reports pg_is_in_recovery(): a standby is a replica.
func (d *Driver) Replica(ctx context.Context) (bool, error) {
	conn, err := d.connect(ctx, d.adminDB)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var standby bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	return standby, nil
}
