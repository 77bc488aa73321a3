// Package mysql backs up MySQL and MariaDB servers with mysqldump or
// mariadb-dump: one consistent (--single-transaction) dump per database with
// routines, triggers, events and binary data in hex, plus the users and their
// grants. It restores them with the mysql or mariadb client.
package mysql

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"remora.dev/remora/drivers"
)

// Name is the driver's name in --driver and remora.dev/driver.
const Name = "mysql"

// Object formats.
const FormatSQL = "sql"

func init() {
	drivers.Register(Name, func(cfg drivers.Config) (drivers.Driver, error) { return New(cfg) })
}

// systemSchemas are never backed up as databases.
var systemSchemas = []string{"information_schema", "performance_schema", "mysql", "sys"}

// Driver talks to one MySQL or MariaDB server.
type Driver struct {
	conn      []string // connection options for the tools, without the password
	password  string
	where     string // host:port or the socket, for messages
	network   string // "unix" for a socket, else "tcp"
	user      string
	databases []string
	dumpArgs  []string
}

// dumpFlags are the mysqldump/mariadb-dump flags --dump-args accepts. Flags
// that write files (--result-file, --tab, --log-error), change the connection
// or the server (--host, --flush-logs, --dump-slave, ...), or drop the
// "Dump completed" trailer (--compact, --skip-comments) are not here.
var dumpFlags = []drivers.Flag{
	{Long: "ignore-table", Value: true}, {Long: "ignore-table-data", Value: true}, {Long: "where", Short: 'w', Value: true},
	{Long: "no-data", Short: 'd'}, {Long: "no-create-info", Short: 't'}, {Long: "skip-add-drop-table"},
	{Long: "skip-extended-insert"}, {Long: "extended-insert", Short: 'e'}, {Long: "complete-insert", Short: 'c'},
	{Long: "insert-ignore"}, {Long: "replace"}, {Long: "skip-tz-utc"}, {Long: "order-by-primary"},
	{Long: "max-allowed-packet", Value: true}, {Long: "net-buffer-length", Value: true}, {Long: "skip-triggers"},
	{Long: "skip-routines"}, {Long: "skip-events"}, {Long: "column-statistics", Value: true},
	{Long: "no-tablespaces", Short: 'y'}, {Long: "skip-disable-keys"}, {Long: "skip-add-locks"},
	{Long: "add-drop-trigger"}, {Long: "verbose", Short: 'v'},
}

// New checks the DSN: mysql://user[:password]@host[:port]/ or
// mysql://user[:password]@/?socket=/run/mysqld/mysqld.sock.
func New(cfg drivers.Config) (*Driver, error) {
	u, err := url.Parse(cfg.DSN)
	if err != nil || (u.Scheme != "mysql" && u.Scheme != "mariadb") {
		return nil, fmt.Errorf("mysql: the DSN must be a URL such as mysql://user@host:3306/ or mysql://user@/?socket=/run/mysqld/mysqld.sock")
	}
	if err := drivers.CheckArgs("mysqldump", cfg.DumpArgs, dumpFlags); err != nil {
		return nil, err
	}
	d := &Driver{databases: cfg.Databases, user: "root", dumpArgs: cfg.DumpArgs}
	if u.User != nil {
		d.user = u.User.Username()
		d.password, _ = u.User.Password()
	}
	if strings.IndexByte(d.password, 0) >= 0 || len(optionFile(d.password)) > maxOptionLine {
		return nil, fmt.Errorf("mysql: the password is longer than the MySQL clients read from a file or holds a NUL byte: change the password")
	}
	d.conn = []string{"--user=" + d.user, "--default-character-set=utf8mb4"}
	q := u.Query()
	for k := range q {
		if k != "socket" {
			return nil, fmt.Errorf("mysql: unknown DSN option %q (known: socket)", k)
		}
	}
	if sock := q.Get("socket"); sock != "" {
		d.conn = append(d.conn, "--protocol=SOCKET", "--socket="+sock)
		d.where, d.network = sock, "unix"
	} else {
		host := u.Hostname()
		if host == "" {
			host = "127.0.0.1"
		}
		port := u.Port()
		if port == "" {
			port = "3306"
		}
		d.conn = append(d.conn, "--protocol=TCP", "--host="+host, "--port="+port)
		d.where, d.network = net.JoinHostPort(host, port), "tcp"
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		return nil, fmt.Errorf("mysql: the DSN names no database (got %q); choose them with --databases", p)
	}
	return d, nil
}

// server is what Plan learns about the server and its tools.
type server struct {
	version string
	mariadb bool
	dump    string // the dump tool's path
	client  string // the client's path
	logBin  bool   // binary logging is on: dumps record their position in it
}

// tools picks the dump tool and client: MariaDB's own for MariaDB servers,
// MySQL's for MySQL servers, whichever is installed otherwise.
func tools(mariadb bool) (dump, client string, err error) {
	dumps, clients := []string{"mysqldump", "mariadb-dump"}, []string{"mysql", "mariadb"}
	if mariadb {
		slices.Reverse(dumps)
		slices.Reverse(clients)
	}
	for _, n := range dumps {
		if p, err := exec.LookPath(n); err == nil {
			dump = p
			break
		}
	}
	for _, n := range clients {
		if p, err := exec.LookPath(n); err == nil {
			client = p
			break
		}
	}
	if dump == "" || client == "" {
		return "", "", fmt.Errorf("mysql: mariadb-dump/mysqldump and the mariadb/mysql client are needed: install the MariaDB or MySQL client tools")
	}
	return dump, client, nil
}

// command builds a tool invocation. Its first argument (the tools take it
// nowhere else) makes it read no option file of the host's (~/.my.cnf,
// /etc/mysql), as the DSN says everything: --defaults-file, a file of the
// password alone, or --no-defaults without a password. The password is
// never in the tool's environment (MYSQL_PWD), which another process of the
// same user reads, nor in its arguments, which ps shows.
func (d *Driver) command(path string, args ...string) drivers.Command {
	cmd := drivers.Command{Path: path, Args: append(slices.Clone(d.conn), args...), Env: drivers.ToolEnv(nil)}
	if d.password == "" {
		cmd.Args = append([]string{"--no-defaults"}, cmd.Args...)
	} else {
		cmd.Secret = &drivers.SecretFile{Content: optionFile(d.password), Arg: "--defaults-file="}
	}
	return cmd
}

// optionFile is an option file that gives the clients the password. The
// value is double-quoted, which keeps its leading and trailing spaces and a
// "#" (a comment outside quotes); inside, the option file parser turns \\,
// \", \n, \r, \t and \b back into the characters.
func optionFile(password string) string {
	return "[client]\npassword=\"" + optionEscaper.Replace(password) + "\"\n"
}

var optionEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`, "\b", `\b`)

// maxOptionLine is the longest line the option file parser reads whole (it
// reads 4 KiB at a time).
const maxOptionLine = 4000

// query runs SQL through the client and returns its rows, tab-separated.
func (d *Driver) query(ctx context.Context, client, sql string) ([][]string, error) {
	var out bytes.Buffer
	cmd := d.command(client, "--batch", "--skip-column-names", "--raw", "--connect-timeout=15", "--execute="+sql)
	if err := cmd.Run(ctx, nil, &out); err != nil {
		return nil, d.explain(err)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows, nil
}

// explain turns the client's connection errors into advice.
func (d *Driver) explain(err error) error {
	says := func(s string) bool { return drivers.ToolSays(err, s) }
	switch {
	case says("ERROR 1045"):
		return fmt.Errorf("mysql %s: login as %q refused: check the user and password (DSN)", d.where, d.user)
	case says("Can't connect"), says("Lost connection"), says("Connection refused"):
		return fmt.Errorf("mysql %s: cannot connect: check the DSN and that the server is running (%s)", d.where, err)
	}
	return fmt.Errorf("mysql %s: %w", d.where, err)
}

func (d *Driver) inspect(ctx context.Context) (*server, error) {
	dump, client, err := tools(true)
	if err != nil {
		return nil, err
	}
	rows, err := d.query(ctx, client, "SELECT VERSION(), @@log_bin")
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 || len(rows[0]) != 2 {
		return nil, fmt.Errorf("mysql %s: cannot read the server version", d.where)
	}
	s := &server{version: rows[0][0], mariadb: strings.Contains(strings.ToLower(rows[0][0]), "mariadb"), logBin: rows[0][1] == "1"}
	if !s.mariadb {
		if dump, client, err = tools(false); err != nil {
			return nil, err
		}
	}
	s.dump, s.client = dump, client
	return s, nil
}

func toolVersion(ctx context.Context, path string) string {
	var out bytes.Buffer
	if err := (drivers.Command{Path: path, Args: []string{"--version"}}).Run(ctx, nil, &out); err != nil {
		return "unknown"
	}
	return strings.TrimSpace(out.String())
}

func (d *Driver) Plan(ctx context.Context) (*drivers.Plan, error) {
	s, err := d.inspect(ctx)
	if err != nil {
		return nil, err
	}
	plan := &drivers.Plan{ServerVersion: s.version, Tools: map[string]string{
		"dump": toolVersion(ctx, s.dump), "client": toolVersion(ctx, s.client),
	}}
	plan.Objects = append(plan.Objects, drivers.Object{Name: "users.sql", Kind: drivers.KindGlobals, Format: FormatSQL})
	rows, err := d.query(ctx, s.client, "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	var all []string
	for _, r := range rows {
		if len(r) != 3 || slices.Contains(systemSchemas, r[0]) {
			continue
		}
		all = append(all, r[0])
		if d.databases != nil && !slices.Contains(d.databases, r[0]) {
			continue
		}
		found[r[0]] = true
		plan.Objects = append(plan.Objects, drivers.Object{
			Name: "databases/" + drivers.ObjectFileName(r[0]) + ".sql", Kind: drivers.KindDatabase, Database: r[0], Format: FormatSQL,
			Meta: map[string]string{"charset": r[1], "collation": r[2]},
		})
	}
	for _, want := range d.databases {
		if !found[want] {
			return nil, fmt.Errorf("mysql: database %q not found on the server (it has: %s): fix --databases", want, strings.Join(all, ", "))
		}
	}
	return plan, nil
}

// completed is the trailer a dump tool writes only when it finished.
var completed = []byte("-- Dump completed")

func (d *Driver) Dump(ctx context.Context, obj drivers.Object, w io.Writer) error {
	s, err := d.inspect(ctx)
	if err != nil {
		return err
	}
	switch obj.Kind {
	case drivers.KindGlobals:
		return d.dumpUsers(ctx, s, w)
	case drivers.KindDatabase:
		args := []string{"--single-transaction", "--routines", "--triggers", "--events", "--hex-blob",
			"--add-drop-table", "--comments"}
		if !s.mariadb {
			args = append(args, "--set-gtid-purged=OFF") // a restore must not rewrite the target's GTID state
		}
		if s.logBin {
			args = append(args, positionFlags(toolVersion(ctx, s.dump))...)
		}
		tail := &tailWriter{w: w}
		args = append(args, d.dumpArgs...)
		if err := d.command(s.dump, append(args, "--", obj.Database)...).Run(ctx, nil, tail); err != nil {
			return d.explain(err)
		}
		if !bytes.Contains(tail.last, completed) {
			return fmt.Errorf("mysql: the dump of %q ended without its %q trailer: it is incomplete", obj.Database, completed)
		}
		return nil
	}
	return fmt.Errorf("mysql: unknown object kind %q", obj.Kind)
}

// tailWriter passes writes through and keeps the last bytes.
type tailWriter struct {
	w    io.Writer
	last []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.last = append(t.last, p[:n]...)
	if len(t.last) > 512 {
		t.last = append(t.last[:0], t.last[len(t.last)-512:]...)
	}
	return n, err
}

// internalUsers are the accounts the server creates for itself.
var internalUsers = regexp.MustCompile(`^(mariadb\.sys|mysql\.(sys|session|infoschema))$`)

// dumpUsers writes CREATE USER IF NOT EXISTS and GRANT statements for every
// account, which both MySQL (5.7+) and MariaDB (10.2+) accept.
func (d *Driver) dumpUsers(ctx context.Context, s *server, w io.Writer) error {
	accounts := "SELECT User, Host FROM mysql.user ORDER BY User, Host"
	if s.mariadb {
		accounts = "SELECT User, Host FROM mysql.user WHERE is_role = 'N' ORDER BY User, Host" // roles are not accounts
	}
	rows, err := d.query(ctx, s.client, accounts)
	if err != nil {
		return err
	}
	var script strings.Builder
	var accts []string
	for _, r := range rows {
		if len(r) != 2 || r[0] == "" || internalUsers.MatchString(r[0]) {
			continue
		}
		acct := sqlString(r[0]) + "@" + sqlString(r[1])
		accts = append(accts, acct)
		fmt.Fprintf(&script, "SHOW CREATE USER %s; SHOW GRANTS FOR %s;\n", acct, acct)
	}
	fmt.Fprintf(w, "-- Users and grants of %s, taken by remora\n", s.version)
	if script.Len() == 0 {
		_, err := w.Write(append(completed, '\n'))
		return err
	}
	// --force goes on past accounts the server cannot show (a host-name
	// account under skip-name-resolve); they are listed as skipped. Any
	// other error fails the dump.
	var out, stderr bytes.Buffer
	cmd := d.command(s.client, "--batch", "--skip-column-names", "--raw", "--force")
	cmd.Stderr = &stderr
	runErr := cmd.Run(ctx, strings.NewReader(script.String()), &out)
	var skipped []string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if !strings.HasPrefix(line, "ERROR") {
			continue
		}
		m := unknownAccount.FindStringSubmatch(line)
		if m == nil {
			return d.explain(&drivers.ToolError{Tool: filepath.Base(s.client), Stderr: line})
		}
		n, _ := strconv.Atoi(m[1])
		if n >= 1 && n <= len(accts) && !slices.Contains(skipped, accts[n-1]) {
			skipped = append(skipped, accts[n-1])
		}
	}
	if runErr != nil && len(skipped) == 0 {
		return d.explain(runErr)
	}
	for _, a := range skipped {
		fmt.Fprintf(w, "-- skipped %s: the server cannot show it (a host-name account under skip-name-resolve?)\n", a)
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "CREATE USER "); ok {
			line = "CREATE USER IF NOT EXISTS " + rest
		}
		if _, err := fmt.Fprintf(w, "%s;\n", line); err != nil {
			return err
		}
	}
	_, err = w.Write(append(completed, '\n'))
	return err
}

// unknownAccount is the client's error for SHOW CREATE USER of an account
// the server ignores, with the script line it came from.
var unknownAccount = regexp.MustCompile(`^ERROR (?:1133 \(28000\)|1141 \(42000\)) at line (\d+):`)

func sqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func sqlIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func (d *Driver) exists(ctx context.Context, s *server, db string) (bool, error) {
	rows, err := d.query(ctx, s.client, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = "+sqlString(db))
	if err != nil {
		return false, err
	}
	return len(rows) == 1 && rows[0][0] == "1", nil
}

func (d *Driver) CheckRestore(ctx context.Context, objs []drivers.Object, opts drivers.RestoreOptions) error {
	s, err := d.inspect(ctx)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		switch obj.Kind {
		case drivers.KindGlobals:
			if !opts.Yes {
				return fmt.Errorf("mysql: restoring users and grants changes the server: add --yes")
			}
		case drivers.KindDatabase:
			name := opts.Target(obj)
			ok, err := d.exists(ctx, s, name)
			if err != nil {
				return err
			}
			if ok && !opts.Yes {
				return fmt.Errorf("mysql: database %q exists and the restore would overwrite it: add --yes, or restore with --into NEW_NAME", name)
			}
		}
	}
	return nil
}

// Restore loads a dump with the client, which stops at the first error. A
// database that did not exist is created with the original character set and
// collation, and dropped again if the load fails. MySQL cannot load a dump in
// one transaction: a failed load over an existing database (--yes) leaves the
// tables it reached replaced.
func (d *Driver) Restore(ctx context.Context, obj drivers.Object, r io.Reader, opts drivers.RestoreOptions) error {
	s, err := d.inspect(ctx)
	if err != nil {
		return err
	}
	if obj.Kind == drivers.KindGlobals {
		// Accounts and grants are replayed one statement at a time past
		// errors: a grant the restoring user may not give (root's PROXY
		// grant, say) must not stop the databases from coming back.
		var stderr bytes.Buffer
		cmd := d.command(s.client, "--binary-mode", "--force")
		cmd.Stderr = &stderr
		err := cmd.Run(ctx, r, io.Discard)
		var failed []string
		for _, line := range strings.Split(stderr.String(), "\n") {
			if strings.HasPrefix(line, "ERROR") {
				failed = append(failed, line)
			}
		}
		if err != nil && len(failed) == 0 {
			return fmt.Errorf("mysql: restore users and grants: %w", d.explain(err))
		}
		if len(failed) > 0 {
			opts.Warnf("mysql: %d user or grant statements failed and were skipped: %s", len(failed), strings.Join(failed, " | "))
		}
		return nil
	}
	name := opts.Target(obj)
	exists, err := d.exists(ctx, s, name)
	if err != nil {
		return err
	}
	if exists && !opts.Yes {
		return fmt.Errorf("mysql: database %q exists: add --yes to overwrite it, or restore with --into NEW_NAME", name)
	}
	if !exists {
		create := "CREATE DATABASE " + sqlIdent(name)
		if cs := obj.Meta["charset"]; cs != "" {
			create += " CHARACTER SET " + sqlString(cs)
		}
		if c := obj.Meta["collation"]; c != "" {
			create += " COLLATE " + sqlString(c)
		}
		if _, err := d.query(ctx, s.client, create); err != nil {
			return fmt.Errorf("mysql: create database %q: %w", name, err)
		}
	}
	err = d.command(s.client, "--binary-mode", "--database="+name).Run(ctx, r, io.Discard)
	if err == nil {
		return nil
	}
	if !exists {
		dctx := context.WithoutCancel(ctx)
		if _, derr := d.query(dctx, s.client, "DROP DATABASE IF EXISTS "+sqlIdent(name)); derr != nil {
			return fmt.Errorf("mysql: restore into %q failed: %w; dropping the half-restored database also failed: %v", name, err, derr)
		}
		return fmt.Errorf("mysql: restore into %q failed (the new database was dropped): %w", name, d.explain(err))
	}
	return fmt.Errorf("mysql: restore into %q failed part way; the tables it reached were replaced: %w", name, d.explain(err))
}

// Replica reports whether the server replicates from another (it has replica
// status) or is read-only.
func (d *Driver) Replica(ctx context.Context) (bool, error) {
	s, err := d.inspect(ctx)
	if err != nil {
		return false, err
	}
	rows, err := d.query(ctx, s.client, "SELECT @@global.read_only")
	if err != nil {
		return false, err
	}
	if len(rows) == 1 && rows[0][0] == "1" {
		return true, nil
	}
	// SHOW REPLICA STATUS is MySQL 8.0.22+ and MariaDB 10.5+; older ones
	// know SHOW SLAVE STATUS.
	rows, err = d.query(ctx, s.client, "SHOW REPLICA STATUS")
	if err != nil {
		if rows, err = d.query(ctx, s.client, "SHOW SLAVE STATUS"); err != nil {
			return false, err
		}
	}
	return len(rows) > 0, nil
}
