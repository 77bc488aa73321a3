package mysql

// Restore drills: row counts recorded at dump time and a throwaway MariaDB
// to restore into.
//
// mysqldump's --single-transaction snapshot cannot be shared with another
// connection, so the rows are not counted on the server: they are counted
// in the dump itself, as it streams (rowCounter), which is exact by
// construction: the drill compares what the dump holds with what the
// restore loaded, whatever clients wrote meanwhile.

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"remora.dev/remora/drivers"
)

// checkRows is the Meta key of a table's row count: check.rows.`table`.
const checkRows = drivers.CheckPrefix + "rows."

func init() {
	drivers.RegisterScratch(Name, startScratch)
}

// DumpMeta dumps obj; a database's dump also returns its row counts and,
// with binary logging on, its position in the binary log (position.go).
func (d *Driver) DumpMeta(ctx context.Context, obj drivers.Object, w io.Writer) (map[string]string, error) {
	if obj.Kind != drivers.KindDatabase {
		return nil, d.Dump(ctx, obj, w)
	}
	rc, ps := newRowCounter(), newPositionScanner()
	if err := d.Dump(ctx, obj, io.MultiWriter(w, rc, ps)); err != nil {
		return nil, err
	}
	meta := rc.meta()
	if pm := ps.meta(); pm != nil {
		maps.Copy(meta, pm)
		// The server's clock once the snapshot was taken, in the clock of
		// the binary log's timestamps: a restore to a time uses this dump
		// only when this is not after the target, whatever the agent's
		// clock says.
		t, err := d.serverNow(ctx)
		if err != nil {
			return nil, err
		}
		meta[MetaBinlogTime] = t.UTC().Format(time.RFC3339Nano)
	}
	return meta, nil
}

// Observe counts, in the restored database, the rows of the tables the dump
// held.
func (d *Driver) Observe(ctx context.Context, obj drivers.Object, opts drivers.RestoreOptions) (map[string]string, error) {
	if obj.Kind != drivers.KindDatabase {
		return nil, nil
	}
	s, err := d.inspect(ctx)
	if err != nil {
		return nil, err
	}
	db := opts.Target(obj)
	rows, err := d.query(ctx, s.client, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA = "+sqlString(db))
	if err != nil {
		return nil, err
	}
	var tables, parts []string
	for _, r := range rows {
		if _, ok := obj.Meta[checkRows+sqlIdent(r[0])]; ok {
			tables = append(tables, r[0])
			parts = append(parts, "SELECT COUNT(*) FROM "+sqlIdent(db)+"."+sqlIdent(r[0]))
		}
	}
	got := map[string]string{}
	if len(parts) == 0 {
		return got, nil
	}
	counts, err := d.query(ctx, s.client, strings.Join(parts, " UNION ALL "))
	if err != nil {
		return nil, err
	}
	if len(counts) != len(tables) {
		return nil, fmt.Errorf("mysql: counted %d tables, asked for %d", len(counts), len(tables))
	}
	for i, t := range tables {
		got[checkRows+sqlIdent(t)] = counts[i][0]
	}
	return got, nil
}

// rowCounter counts the rows of each table in a dump as it streams. A
// statement begins a line: CREATE TABLE `t` names a table; each INSERT
// [IGNORE] INTO / REPLACE INTO `t` [(columns)] VALUES (...),(...); adds its
// tuples, counted as the parentheses at depth 0 after VALUES, outside
// quotes, up to the statement's ';' (MariaDB's dump puts each tuple on a
// line of its own; the tools escape newlines within strings).
type rowCounter struct {
	state   int
	prefix  []byte // the current line's start, while it may be a statement we count
	name    []byte
	create  bool
	table   string
	quote   byte
	esc     bool
	depth   int
	recent  [6]byte // the last unquoted bytes at depth 0, to see VALUES
	values  bool
	counts  map[string]int64
	pending bool // a backtick in a name, which may be doubled
}

const (
	rcLine = iota
	rcName
	rcStatement
	rcSkip
)

var counted = []string{"INSERT INTO `", "INSERT IGNORE INTO `", "REPLACE INTO `", "CREATE TABLE `"}

func newRowCounter() *rowCounter { return &rowCounter{counts: map[string]int64{}} }

func (rc *rowCounter) Write(p []byte) (int, error) {
	for _, c := range p {
		rc.step(c)
	}
	return len(p), nil
}

func (rc *rowCounter) step(c byte) {
	switch rc.state {
	case rcLine:
		rc.lineStart(c)
	case rcName:
		rc.nameByte(c)
	case rcStatement:
		rc.statement(c)
	case rcSkip:
		if c == '\n' {
			rc.state, rc.prefix = rcLine, rc.prefix[:0]
		}
	}
}

func (rc *rowCounter) lineStart(c byte) {
	if c == '\n' {
		rc.prefix = rc.prefix[:0]
		return
	}
	rc.prefix = append(rc.prefix, c)
	for _, s := range counted {
		if string(rc.prefix) == s {
			rc.state, rc.name, rc.create, rc.pending = rcName, rc.name[:0], s[0] == 'C', false
			return
		}
		if strings.HasPrefix(s, string(rc.prefix)) {
			return
		}
	}
	rc.state = rcSkip
}

func (rc *rowCounter) nameByte(c byte) {
	if rc.pending {
		rc.pending = false
		if c == '`' {
			rc.name = append(rc.name, '`')
			return
		}
		rc.table = string(rc.name)
		if _, ok := rc.counts[rc.table]; !ok {
			rc.counts[rc.table] = 0
		}
		if rc.create {
			rc.state = rcSkip
			rc.step(c)
			return
		}
		rc.state, rc.quote, rc.esc, rc.depth, rc.values, rc.recent = rcStatement, 0, false, 0, false, [6]byte{}
		rc.step(c)
		return
	}
	if c == '`' {
		rc.pending = true
		return
	}
	if c == '\n' || len(rc.name) > 256 {
		rc.state = rcLine
		rc.prefix = rc.prefix[:0]
		return
	}
	rc.name = append(rc.name, c)
}

func (rc *rowCounter) statement(c byte) {
	if rc.quote != 0 {
		switch {
		case rc.esc:
			rc.esc = false
		case c == '\\' && rc.quote != '`':
			rc.esc = true
		case c == rc.quote:
			rc.quote = 0
		}
		return
	}
	switch c {
	case ';':
		if rc.depth == 0 {
			rc.state = rcSkip
		}
	case '\'', '"', '`':
		rc.quote = c
	case '(':
		if rc.depth == 0 && rc.values {
			rc.counts[rc.table]++
		}
		rc.depth++
	case ')':
		rc.depth--
	default:
		if rc.depth == 0 {
			copy(rc.recent[:], rc.recent[1:])
			rc.recent[5] = c
			if string(rc.recent[:]) == "VALUES" {
				rc.values = true
			}
		}
	}
}

// meta is the counts as Meta: the largest drivers.MaxChecks tables.
func (rc *rowCounter) meta() map[string]string {
	names := make([]string, 0, len(rc.counts))
	for t := range rc.counts {
		names = append(names, t)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := rc.counts[names[i]], rc.counts[names[j]]
		return a > b || a == b && names[i] < names[j]
	})
	out := map[string]string{}
	if len(names) > drivers.MaxChecks {
		out[drivers.MetaChecksOmitted] = fmt.Sprintf("%d of %d tables (the largest %d are counted)", len(names)-drivers.MaxChecks, len(names), drivers.MaxChecks)
		names = names[:drivers.MaxChecks]
	}
	for _, t := range names {
		out[checkRows+sqlIdent(t)] = strconv.FormatInt(rc.counts[t], 10)
	}
	return out
}

// scratchArgs keep the throwaway server small: a 32 MiB buffer pool, no
// binary log, no durability, no network (a socket in its directory).
var scratchArgs = []string{"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=0",
	"--innodb-doublewrite=0", "--skip-log-bin", "--skip-performance-schema", "--skip-name-resolve", "--skip-networking",
	"--max-connections=20", "--key-buffer-size=8M", "--aria-pagecache-buffer-size=8M", "--max-allowed-packet=1G"}

// startScratch starts a throwaway MariaDB on a unix socket in o.Dir.
func startScratch(ctx context.Context, o drivers.ScratchOptions) (*drivers.Scratch, error) {
	install, err := exec.LookPath("mariadb-install-db")
	server := findServer()
	if err != nil || server == "" {
		return nil, fmt.Errorf("mysql: a drill needs the MariaDB server (mariadb-install-db, mariadbd): %w", drivers.ErrNoServer)
	}
	data, sock := filepath.Join(o.Dir, "data"), filepath.Join(o.Dir, "mysqld.sock")
	base := []string{"--no-defaults", "--datadir=" + data}
	if os.Geteuid() == 0 {
		base = append(base, "--user=root")
	}
	args := append(append(base, "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"), scratchArgs[:5]...)
	if err := (drivers.Command{Path: install, Args: args}).Run(ctx, nil, io.Discard); err != nil {
		return nil, fmt.Errorf("mysql: mariadb-install-db for the drill's server: %w", err)
	}
	args = append(append(base, "--socket="+sock, "--pid-file="+filepath.Join(o.Dir, "mysqld.pid"), "--tmpdir="+o.Dir,
		"--log-error="+filepath.Join(o.Dir, "error.log")), scratchArgs...)
	srv, err := drivers.StartServer(ctx, server, args, drivers.ToolEnv(nil), nil, filepath.Join(o.Dir, "mariadbd.log"))
	if err != nil {
		return nil, fmt.Errorf("mysql: start the drill's server: %w", err)
	}
	stop := func() { srv.Stop(syscall.SIGTERM, time.Minute) }
	dsn := "mysql://root@/?socket=" + sock
	d, _ := New(drivers.Config{DSN: dsn})
	err = srv.WaitReady(ctx, 10*time.Minute, func() error { _, err := d.inspect(ctx); return err })
	if err != nil {
		stop()
		log, _ := os.ReadFile(filepath.Join(o.Dir, "error.log"))
		return nil, fmt.Errorf("mysql: the drill's server did not start: %w: %s", err, tail(string(log), 5))
	}
	return &drivers.Scratch{DSN: dsn, Stop: stop}, nil
}

// findServer finds mariadbd (or mysqld, MariaDB's older name), often in an
// sbin directory that is not on PATH.
func findServer() string {
	for _, n := range []string{"mariadbd", "/usr/sbin/mariadbd", "mysqld", "/usr/sbin/mysqld"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
