package postgres

// Restore drills: row counts recorded at dump time, in the dump's own
// snapshot, and a throwaway server to restore into.
//
// The counts are exact for the dump: dumpCounted opens a REPEATABLE READ
// transaction, exports its snapshot (pg_export_snapshot) and runs pg_dump
// with --snapshot, so pg_dump reads the very snapshot the counts are taken
// in, whatever clients write meanwhile. The counting runs while pg_dump
// dumps (one more scan of each counted table, mostly from the cache pg_dump
// just filled), inside a savepoint, so that a failed count never ends the
// transaction that pg_dump's snapshot lives in.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"remora.dev/remora/drivers"
)

// checkRows is the Meta key of a table's row count: check.rows."schema"."table".
const checkRows = drivers.CheckPrefix + "rows."

func init() {
	drivers.RegisterScratch(Name, startScratch)
}

// selectingFlags are the pg_dump flags that choose tables, schemas or data:
// with one of them the dump holds only part of what the server does, and
// which part is pg_dump's pattern matching to say, so no rows are counted
// (the drill still restores the dump). --serializable-deferrable cannot be
// given with --snapshot.
var selectingFlags = []string{"schema", "n", "exclude-schema", "N", "table", "t", "exclude-table", "T",
	"exclude-table-data", "exclude-table-and-children", "exclude-table-data-and-children", "extension", "e",
	"exclude-extension", "data-only", "a", "schema-only", "s", "no-unlogged-table-data", "serializable-deferrable"}

// selectsPart reports whether the extra dump flags choose part of the
// database.
func selectsPart(args []string) bool {
	for _, a := range args {
		name := a
		switch {
		case strings.HasPrefix(a, "--"):
			name, _, _ = strings.Cut(a[2:], "=")
		case len(a) >= 2 && a[0] == '-':
			name = a[1:2]
		default:
			continue
		}
		if slices.Contains(selectingFlags, name) {
			return true
		}
	}
	return false
}

// countedTables lists the tables whose rows pg_dump dumps (ordinary tables
// and partitions, outside the system schemas and extensions), largest
// first, at most limit (all when limit <= 0), and how many there are.
const countedTables = `SELECT n.nspname, c.relname, count(*) OVER ()
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind = 'r' AND c.relpersistence <> 't'
	  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
	  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
	ORDER BY c.relpages DESC, n.nspname, c.relname`

// tableKey is a table's check key.
func tableKey(schema, table string) string {
	return checkRows + pgx.Identifier{schema, table}.Sanitize()
}

// dumpDatabase dumps one database with pg_dump and returns the row counts
// it holds, taken in its snapshot (as the file's comment says), or a note
// of why there are none.
func (d *Driver) dumpDatabase(ctx context.Context, obj drivers.Object, w io.Writer) (map[string]string, error) {
	args := append(slices.Clone(d.dumpArgs), "--format=custom", "--compress=0", "--no-password", "--dbname="+d.dbURL(obj.Database))
	if selectsPart(d.dumpArgs) {
		return map[string]string{drivers.MetaChecksOmitted: "row counts: --dump-args choose part of the database"},
			d.tool("pg_dump", args...).Run(ctx, nil, w)
	}
	conn, err := d.connect(ctx, obj.Database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("postgres: begin the dump's snapshot: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var snapshot string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
		return nil, fmt.Errorf("postgres: export the dump's snapshot: %w", err)
	}
	dumped := make(chan error, 1)
	go func() { dumped <- d.tool("pg_dump", append(args, "--snapshot="+snapshot)...).Run(ctx, nil, w) }()
	meta, cerr := countRows(ctx, tx)
	if err := <-dumped; err != nil {
		return nil, err
	}
	if cerr != nil {
		drivers.Warnf(ctx, "postgres: the rows of %q were not counted for restore drills: %v", obj.Database, cerr)
		meta = map[string]string{drivers.MetaChecksOmitted: "row counts: " + cerr.Error()}
	}
	return meta, nil
}

// countRows counts the rows of the largest drivers.MaxChecks tables in tx,
// within a savepoint.
func countRows(ctx context.Context, tx pgx.Tx) (map[string]string, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer sp.Rollback(context.WithoutCancel(ctx))
	rows, err := sp.Query(ctx, countedTables+" LIMIT $1", drivers.MaxChecks)
	if err != nil {
		return nil, err
	}
	var names []pgx.Identifier
	total := 0
	for rows.Next() {
		var schema, table string
		if err := rows.Scan(&schema, &table, &total); err != nil {
			return nil, err
		}
		names = append(names, pgx.Identifier{schema, table})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	meta := map[string]string{}
	for _, id := range names {
		var n int64
		if err := sp.QueryRow(ctx, "SELECT count(*) FROM "+id.Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("count %s: %w", id.Sanitize(), err)
		}
		meta[checkRows+id.Sanitize()] = strconv.FormatInt(n, 10)
	}
	if total > len(names) {
		meta[drivers.MetaChecksOmitted] = fmt.Sprintf("%d of %d tables (the largest %d are counted)", total-len(names), total, len(names))
	}
	return meta, nil
}

// Observe counts, in the restored database, the rows of the tables obj's
// dump counted. A physical backup records no counts: every table of every
// database is read instead, which fails on a page the server cannot read.
func (d *Driver) Observe(ctx context.Context, obj drivers.Object, opts drivers.RestoreOptions) (map[string]string, error) {
	if obj.Kind == drivers.KindPhysical {
		return d.observePhysical(ctx)
	}
	if obj.Kind != drivers.KindDatabase {
		return nil, nil
	}
	conn, err := d.connect(ctx, opts.Target(obj))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return countWanted(ctx, conn, obj.Meta)
}

// countWanted counts the rows of the tables that want names and exist.
func countWanted(ctx context.Context, conn *pgx.Conn, want map[string]string) (map[string]string, error) {
	rows, err := conn.Query(ctx, countedTables)
	if err != nil {
		return nil, err
	}
	var names []pgx.Identifier
	for rows.Next() {
		var schema, table string
		var total int
		if err := rows.Scan(&schema, &table, &total); err != nil {
			return nil, err
		}
		if _, ok := want[tableKey(schema, table)]; ok || want == nil {
			names = append(names, pgx.Identifier{schema, table})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	got := map[string]string{}
	for _, id := range names {
		var n int64
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+id.Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("postgres: count %s: %w", id.Sanitize(), err)
		}
		got[checkRows+id.Sanitize()] = strconv.FormatInt(n, 10)
	}
	return got, nil
}

// observePhysical reads every table of every database of a server started
// on a restored data directory, and reports how many it read.
func (d *Driver) observePhysical(ctx context.Context) (map[string]string, error) {
	conn, err := d.connect(ctx, d.adminDB)
	if err != nil {
		return nil, err
	}
	dbs, err := listDatabases(ctx, conn)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	tables := 0
	for _, db := range dbs {
		c, err := d.connect(ctx, db)
		if err != nil {
			return nil, err
		}
		got, err := countWanted(ctx, c, nil)
		c.Close(context.WithoutCancel(ctx))
		if err != nil {
			return nil, fmt.Errorf("postgres: database %q: %w", db, err)
		}
		tables += len(got)
	}
	return map[string]string{drivers.CheckPrefix + "readable": fmt.Sprintf("%d databases, %d tables", len(dbs), tables)}, nil
}

func listDatabases(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// scratchSettings keep a throwaway server small and quick: it serves one
// restore, needs no durability, and shares the node with production. Its
// memory is about shared_buffers plus a few backends' work_mem and
// maintenance_work_mem (index builds): some 100 MiB at most.
var scratchSettings = []string{"listen_addresses=", "port=5432", "shared_buffers=16MB", "work_mem=4MB",
	"maintenance_work_mem=64MB", "max_connections=20", "fsync=off", "synchronous_commit=off", "full_page_writes=off",
	"autovacuum=off", "archive_mode=off", "wal_level=minimal", "max_wal_senders=0", "hot_standby=off",
	"max_locks_per_transaction=512", "logging_collector=off", "huge_pages=off", "shared_preload_libraries=", "jit=off"}

// startScratch starts a throwaway PostgreSQL on a unix socket in o.Dir:
// on a new cluster (initdb), or on o.DataDir, a restored physical backup.
func startScratch(ctx context.Context, o drivers.ScratchOptions) (*drivers.Scratch, error) {
	version, _ := strconv.Atoi(o.Meta[MetaServerVersion]) // a physical backup's; 0 for a new cluster
	bin, err := serverBin(version)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	user := "postgres"
	data := o.DataDir
	if data == "" {
		data = filepath.Join(o.Dir, "data")
		if err := initdb(ctx, bin, data, cred); err != nil {
			return nil, err
		}
	} else if o.User != "" {
		user = o.User // the backed-up server's roles: its bootstrap superuser, as the DSN names it
	}
	hba := filepath.Join(o.Dir, "pg_hba.conf")
	if err := os.WriteFile(hba, []byte("local all all trust\n"), 0o600); err != nil {
		return nil, err
	}
	if err := ownTree(o.Dir, cred); err != nil {
		return nil, err
	}
	if o.DataDir != "" {
		if err := ownTree(o.DataDir, cred); err != nil {
			return nil, err
		}
		_ = os.Remove(filepath.Join(o.DataDir, "postmaster.pid")) // the backed-up server's, if the backup holds it
	}
	args := []string{"-D", data, "-k", o.Dir, "-c", "hba_file=" + hba}
	for _, s := range scratchSettings {
		args = append(args, "-c", s)
	}
	srv, err := drivers.StartServer(ctx, filepath.Join(bin, "postgres"), args, drivers.ToolEnv(nil), cred, filepath.Join(o.Dir, "postgres.log"))
	if err != nil {
		return nil, fmt.Errorf("postgres: start the drill's server: %w", err)
	}
	dsn := "postgres://" + url.User(user).String() + "@/postgres?host=" + url.QueryEscape(o.Dir) + "&port=5432"
	stop := func() { srv.Stop(syscall.SIGINT, time.Minute) } // SIGINT: fast shutdown
	d, _ := New(drivers.Config{DSN: dsn})
	err = srv.WaitReady(ctx, 24*time.Hour, func() error {
		c, err := d.connect(ctx, d.adminDB)
		if err == nil {
			c.Close(ctx)
		}
		return err
	})
	if err != nil {
		stop()
		log, _ := os.ReadFile(filepath.Join(o.Dir, "postgres.log"))
		return nil, fmt.Errorf("postgres: the drill's server did not start: %w: %s", err, lastLines(string(log), 5))
	}
	return &drivers.Scratch{DSN: dsn, Stop: stop}, nil
}

// initdb makes a new cluster in data.
func initdb(ctx context.Context, bin, data string, cred *syscall.Credential) error {
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	if err := ownTree(filepath.Dir(data), cred); err != nil {
		return err
	}
	cmd := drivers.Command{Path: filepath.Join(bin, "initdb"), Args: []string{"-D", data, "-U", "postgres",
		"--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions"}}
	cmd.Credential = cred
	if err := cmd.Run(ctx, nil, io.Discard); err != nil {
		return fmt.Errorf("postgres: initdb for the drill's server: %w", err)
	}
	return nil
}

// serverCredential is who the throwaway server runs as: Remora's own user,
// except as root, which PostgreSQL refuses: then the postgres system user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("postgres: the drill's server refuses to run as root and there is no postgres system user: run remora as another user")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// ownTree gives dir and everything below it to cred's user, if any.
func ownTree(dir string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}

// serverBin finds the PostgreSQL server programs: REMORA_PG_BIN, the
// directory of initdb on PATH, or the newest /usr/lib/postgresql/N/bin (the
// one of major version, for a physical backup, which only that major opens).
func serverBin(version int) (string, error) {
	has := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, "postgres"))
		return err == nil
	}
	if dir := os.Getenv("REMORA_PG_BIN"); dir != "" && has(dir) && version == 0 {
		return dir, nil
	}
	if version > 0 {
		dir := fmt.Sprintf("/usr/lib/postgresql/%d/bin", version/10000)
		if dir2 := os.Getenv("REMORA_PG_BIN"); dir2 != "" && has(dir2) && pgMajor(dir2) == version/10000 {
			return dir2, nil
		}
		if has(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("postgres: a physical backup of PostgreSQL %d opens only with that major version's server, and %s has none: %w", version/10000, dir, drivers.ErrNoServer)
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) < pgMajor(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if has(dirs[i]) {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("postgres: no PostgreSQL server programs (initdb, postgres) found: set REMORA_PG_BIN: %w", drivers.ErrNoServer)
}

// pgMajor reads the major version from a /usr/lib/postgresql/N/bin path (0
// if it is not one).
func pgMajor(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

// lastLines is the end of a log, on one line.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
