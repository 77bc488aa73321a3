package postgres

// Physical backups: a base backup taken with BASE_BACKUP over the
// replication protocol (as pg_basebackup does) and streamed as one tar.
//
// The protocol spoken is PostgreSQL 15's: BASE_BACKUP sends one COPY OUT
// stream whose CopyData messages carry a type byte ('n' a new archive, 'd'
// its data, 'p' progress, 'm' the manifest follows). Servers before 15 send
// one COPY OUT per archive instead; they are refused with a clear error
// rather than half-supported.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/errs"
)

// FormatBaseTar is the format of a physical backup's object: one tar with
// the data directory's files at its root, each tablespace's files under
// TablespacePrefix<oid>/, and the server's backup_manifest last.
const FormatBaseTar = "postgres base backup tar"

// BaseTarName is the name of a physical backup's object.
const BaseTarName = "base.tar"

// TablespacePrefix is where a tablespace's files lie in the tar, by OID: a
// name no data directory holds, so the base archive's entries and the
// tablespaces' never meet.
const TablespacePrefix = "pg_tblspc_data/"

// ManifestEntry is the name of the server's backup_manifest in the tar
// (and in a restored data directory, where pg_verifybackup finds it).
const ManifestEntry = "backup_manifest"

// Meta keys of a physical backup's object: what a point-in-time restore
// needs to find and check the WAL that follows it.
const (
	MetaStartLSN         = "start_lsn"          // where replay starts, e.g. "0/2000028"
	MetaStopLSN          = "stop_lsn"           // where the backup is consistent
	MetaTimeline         = "timeline"           // at the start, decimal
	MetaStopTimeline     = "stop_timeline"      // at the stop, decimal
	MetaSystemIdentifier = "system_identifier"  // IDENTIFY_SYSTEM's, decimal
	MetaWALSegmentSize   = "wal_segment_size"   // bytes, decimal
	MetaServerVersion    = "server_version_num" // e.g. "150008"
	MetaStartTime        = "start_time"         // server clock, RFC 3339 (backup_label's START TIME)
	MetaStopTime         = "stop_time"          // server clock, RFC 3339, taken right after the stop
	MetaManifestChecksum = "manifest_checksums" // the backup_manifest's file checksums: CRC32C
	MetaWALIncluded      = "wal_included"       // "true": the WAL from start to stop is in pg_wal/
	MetaTablespacePrefix = "tablespace."        // + OID: the tablespace's location on the server
)

// minPhysicalVersion is the first server whose BASE_BACKUP protocol this
// driver speaks.
const minPhysicalVersion = 150000

func init() {
	drivers.RegisterPhysical(Name)
	drivers.RegisterFormat(FormatBaseTar, drivers.Format{Check: CheckBaseTar, Extract: ExtractBaseTar})
}

// replConnect opens a physical replication connection (replication=true:
// no database; BASE_BACKUP, IDENTIFY_SYSTEM, SHOW and slots only) and says,
// in one line, what to change when the server refuses it.
func (d *Driver) replConnect(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(d.dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: bad DSN: %v", scrub(err, d.password))
	}
	cfg.RuntimeParams["replication"] = "true"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "remora"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn, nil
	}
	where := cfg.Host
	if !strings.HasPrefix(where, "/") {
		where = fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	}
	return nil, replError(where, cfg.User, err, d.password)
}

// replError turns the server's refusal of a replication connection into
// what the operator must change.
func replError(where, user string, err error, password string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("postgres %s: cannot open a replication connection: %v: check the DSN and that the server is running", where, scrub(errs.Root(err), password))
	}
	msg := pgErr.Message
	switch {
	case strings.Contains(msg, "pg_hba.conf") && strings.Contains(msg, "replication"):
		return fmt.Errorf("postgres %s: pg_hba.conf allows no replication connection for user %q from here: add a line such as `host replication %s <this address>/32 scram-sha-256` and reload the server (physical backups need one)", where, user, user)
	case pgErr.Code == "42501" || strings.Contains(msg, "replication role"):
		return fmt.Errorf("postgres %s: user %q may not take physical backups: run ALTER ROLE %s REPLICATION (or use a superuser)", where, user, quoteIdent(user))
	case strings.Contains(msg, "max_wal_senders (currently 0)"):
		return fmt.Errorf("postgres %s: the server allows no replication connections (max_wal_senders = 0, as wal_level = minimal requires): set wal_level = replica and max_wal_senders = 10, and restart it", where)
	case pgErr.Code == "53300" && strings.Contains(msg, "max_wal_senders"):
		return fmt.Errorf("postgres %s: every replication connection is taken (%s): raise max_wal_senders", where, msg)
	case pgErr.Code == "28P01":
		return fmt.Errorf("postgres %s: login as %q refused (%s): check the user and password (DSN or PGPASSWORD)", where, user, msg)
	}
	return fmt.Errorf("postgres %s: replication connection refused: %s (SQLSTATE %s)", where, msg, pgErr.Code)
}

// show reads a server setting over a replication connection.
func show(ctx context.Context, conn *pgconn.PgConn, name string) (string, error) {
	res, err := conn.Exec(ctx, "SHOW "+name).ReadAll()
	if err != nil {
		return "", fmt.Errorf("postgres: SHOW %s: %w", name, err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return "", fmt.Errorf("postgres: SHOW %s: unexpected answer", name)
	}
	return string(res[0].Rows[0][0]), nil
}

// serverFacts is what a physical backup records of the server before it
// starts.
type serverFacts struct {
	version    int
	versionStr string
	segSize    string // bytes
	system     pglogrepl.IdentifySystemResult
}

// readFacts checks that the server can give a physical backup (version,
// wal_level) and reads what the backup records of it.
func readFacts(ctx context.Context, conn *pgconn.PgConn) (*serverFacts, error) {
	f := &serverFacts{versionStr: conn.ParameterStatus("server_version")}
	num, err := show(ctx, conn, "server_version_num")
	if err != nil {
		return nil, err
	}
	if f.version, err = strconv.Atoi(num); err != nil {
		return nil, fmt.Errorf("postgres: server_version_num %q is not a number", num)
	}
	if f.version < minPhysicalVersion {
		return nil, fmt.Errorf("postgres: physical backups need PostgreSQL 15 or newer; this server is %s: use --method logical", f.versionStr)
	}
	level, err := show(ctx, conn, "wal_level")
	if err != nil {
		return nil, err
	}
	if level == "minimal" {
		return nil, errors.New("postgres: wal_level is minimal, which allows no base backup: set wal_level = replica and restart the server")
	}
	if f.segSize, err = walSegmentBytes(ctx, conn); err != nil {
		return nil, err
	}
	if f.system, err = pglogrepl.IdentifySystem(ctx, conn); err != nil {
		return nil, fmt.Errorf("postgres: IDENTIFY_SYSTEM: %w", err)
	}
	return f, nil
}

// walSegmentBytes reads wal_segment_size in bytes: SHOW gives it with a
// unit ("16MB").
func walSegmentBytes(ctx context.Context, conn *pgconn.PgConn) (string, error) {
	v, err := show(ctx, conn, "wal_segment_size")
	if err != nil {
		return "", err
	}
	units := map[string]int64{"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
	i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if i <= 0 || units[v[i:]] == 0 {
		return "", fmt.Errorf("postgres: cannot read wal_segment_size %q", v)
	}
	n, _ := strconv.ParseInt(v[:i], 10, 64)
	return strconv.FormatInt(n*units[v[i:]], 10), nil
}

// physicalPlan checks, before anything is stored, that the server gives a
// base backup to this user, and plans its one object.
func (d *Driver) physicalPlan(ctx context.Context) (*drivers.Plan, error) {
	conn, err := d.replConnect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	f, err := readFacts(ctx, conn)
	if err != nil {
		return nil, err
	}
	return &drivers.Plan{
		ServerVersion: f.versionStr,
		Tools:         map[string]string{},
		Objects:       []drivers.Object{{Name: BaseTarName, Kind: drivers.KindPhysical, Database: "", Format: FormatBaseTar}},
	}, nil
}
