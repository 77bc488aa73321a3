package postgres

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"remora.dev/remora/drivers"
)

// baseBackupCommand asks for a base backup that is complete by itself:
//   - WAL: the WAL from the start checkpoint to the stop is in pg_wal/, so a
//     server started on the restored directory opens without any archive;
//     the temporary slot (baseBackup) keeps that WAL from being recycled
//     during a long backup, as pg_basebackup -X stream's slot does.
//   - WAIT false: the included WAL makes waiting for the server's own
//     archiver (which may be off, or failing) needless.
//   - CHECKPOINT 'fast': a spread checkpoint delays the first byte by up to
//     checkpoint_timeout × checkpoint_completion_target (minutes), against
//     a run's deadline; a fast one costs one checkpoint's writes, once per
//     backup, as pg_basebackup -c fast does.
//   - MANIFEST with CRC32C checksums: verify checks every file against it;
//     CRC32C is the cheapest checksum for the database's CPU (the stored
//     object has its SHA-256 besides).
//   - TABLESPACE_MAP: tablespace links travel as tablespace_map, which a
//     restore rewrites when it moves a tablespace.
const baseBackupCommand = `BASE_BACKUP (LABEL 'remora', PROGRESS false, CHECKPOINT 'fast', WAL true, WAIT false, ` +
	`MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TABLESPACE_MAP true)`

// maxManifest bounds the backup_manifest held in memory until it is
// written as the tar's last entry: about 200 bytes a file, so a server with
// a million files fits.
const maxManifest = 512 << 20

// DumpMeta takes a base backup for a physical object and returns what it
// learnt (the Meta* keys); a database's dump returns its row counts (for
// restore drills); other objects are dumped as Dump does.
func (d *Driver) DumpMeta(ctx context.Context, obj drivers.Object, w io.Writer) (map[string]string, error) {
	switch obj.Kind {
	case drivers.KindPhysical:
		return d.baseBackup(ctx, w)
	case drivers.KindDatabase:
		return d.dumpDatabase(ctx, obj, w)
	}
	return nil, d.Dump(ctx, obj, w)
}

// baseBackup streams a base backup to w as one tar and returns its Meta.
func (d *Driver) baseBackup(ctx context.Context, w io.Writer) (map[string]string, error) {
	conn, err := d.replConnect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	f, err := readFacts(ctx, conn)
	if err != nil {
		return nil, err
	}
	if err := createTempSlot(ctx, conn); err != nil {
		return nil, err
	}
	started, err := d.serverNow(ctx)
	if err != nil {
		return nil, err
	}
	conn.Frontend().SendQuery(&pgproto3.Query{String: baseBackupCommand})
	if err := conn.Frontend().Flush(); err != nil {
		return nil, fmt.Errorf("postgres: send BASE_BACKUP: %w", err)
	}
	s := &baseStream{conn: conn, tw: tar.NewWriter(w), tablespaces: map[string]string{}}
	meta, err := s.run(ctx)
	if err != nil {
		return nil, err
	}
	stopped, err := d.serverNow(ctx)
	if err != nil {
		return nil, err
	}
	meta[MetaSystemIdentifier], meta[MetaWALSegmentSize] = f.system.SystemID, f.segSize
	meta[MetaServerVersion] = strconv.Itoa(f.version)
	meta[MetaStartTime], meta[MetaStopTime] = started.Format(time.RFC3339Nano), stopped.Format(time.RFC3339Nano)
	meta[MetaManifestChecksum], meta[MetaWALIncluded] = "CRC32C", "true"
	for oid, loc := range s.tablespaces {
		meta[MetaTablespacePrefix+oid] = loc
	}
	return meta, nil
}

// createTempSlot creates a temporary physical slot that reserves WAL from
// the last checkpoint's redo point on, for as long as conn lives: the WAL
// the backup includes at its end cannot be recycled while it runs. The
// server drops the slot when the connection ends, however it ends.
func createTempSlot(ctx context.Context, conn *pgconn.PgConn) error {
	var b [6]byte
	rand.Read(b[:])
	name := "remora_base_" + hex.EncodeToString(b[:])
	_, err := conn.Exec(ctx, "CREATE_REPLICATION_SLOT "+name+" TEMPORARY PHYSICAL RESERVE_WAL").ReadAll()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "53400" {
		return fmt.Errorf("postgres: no replication slot is free for the backup's temporary slot (%s): raise max_replication_slots", pgErr.Message)
	}
	if err != nil {
		return fmt.Errorf("postgres: create the backup's temporary replication slot: %w", err)
	}
	return nil
}

// serverNow reads the server's clock over an ordinary connection (a
// replication connection runs no SELECT).
func (d *Driver) serverNow(ctx context.Context) (time.Time, error) {
	conn, err := d.connect(ctx, d.adminDB)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var t time.Time
	if err := conn.QueryRow(ctx, "SELECT statement_timestamp()").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("postgres: read the server's clock: %w", err)
	}
	return t.UTC(), nil
}

// baseStream reads BASE_BACKUP's answer and writes the tar.
type baseStream struct {
	conn        *pgconn.PgConn
	tw          *tar.Writer
	tablespaces map[string]string // OID -> location on the server
	archive     *archiveCopy      // the archive being received, if any
	manifest    *bytes.Buffer     // non-nil once the manifest follows
}

// run reads the start position, the tablespaces, the archives and the
// manifest, and the stop position, and closes the tar.
func (s *baseStream) run(ctx context.Context) (map[string]string, error) {
	start, err := s.resultSet(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.resultSet(ctx); err != nil { // the tablespaces: the 'n' messages say it again
		return nil, err
	}
	if err := s.copyOut(ctx); err != nil {
		s.endArchive(err)
		return nil, err
	}
	stop, err := s.resultSet(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.resultSet(ctx); err != nil && !errors.Is(err, errReady) {
		return nil, err
	}
	meta := map[string]string{}
	if err := position(start, &meta, MetaStartLSN, MetaTimeline); err != nil {
		return nil, err
	}
	if err := position(stop, &meta, MetaStopLSN, MetaStopTimeline); err != nil {
		return nil, err
	}
	return meta, s.writeManifest()
}

// position reads a (recptr, tli) row into meta.
func position(rows [][][]byte, meta *map[string]string, lsnKey, tliKey string) error {
	if len(rows) != 1 || len(rows[0]) != 2 {
		return fmt.Errorf("postgres: BASE_BACKUP sent %d rows where one position was expected", len(rows))
	}
	lsn, err := pglogrepl.ParseLSN(string(rows[0][0]))
	if err != nil {
		return fmt.Errorf("postgres: BASE_BACKUP sent a bad position %q", rows[0][0])
	}
	(*meta)[lsnKey], (*meta)[tliKey] = lsn.String(), string(rows[0][1])
	return nil
}

// errReady: the server is ready for the next command, the answer is over.
var errReady = errors.New("ready for query")

// resultSet reads one result set's rows up to its CommandComplete.
func (s *baseStream) resultSet(ctx context.Context) ([][][]byte, error) {
	var rows [][][]byte
	for {
		msg, err := s.conn.ReceiveMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("postgres: base backup: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription, *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		case *pgproto3.DataRow:
			row := make([][]byte, len(m.Values))
			for i, v := range m.Values {
				row[i] = bytes.Clone(v)
			}
			rows = append(rows, row)
		case *pgproto3.CommandComplete:
			return rows, nil
		case *pgproto3.ReadyForQuery:
			return rows, errReady
		case *pgproto3.ErrorResponse:
			return nil, baseBackupError(pgconn.ErrorResponseToPgError(m))
		default:
			return nil, fmt.Errorf("postgres: base backup: unexpected %T", msg)
		}
	}
}

// baseBackupError says what to change when the server refuses the backup.
func baseBackupError(e *pgconn.PgError) error {
	if e.Code == "55000" && regexp.MustCompile(`(?i)wal level`).MatchString(e.Message) {
		return errors.New("postgres: wal_level is minimal, which allows no base backup: set wal_level = replica and restart the server")
	}
	return fmt.Errorf("postgres: base backup failed: %s (SQLSTATE %s)", e.Message, e.Code)
}
