package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"remora.dev/remora/drivers"
	"remora.dev/remora/storage"
)

// DataDirOptions say where a physical backup is unpacked.
type DataDirOptions struct {
	// Dir is the data directory to fill: it must not exist, or be empty.
	Dir string
	// Tablespaces maps a tablespace's OID to the directory its files go
	// to; one not named goes back where it was on the backed-up server.
	Tablespaces map[string]string
	Identities  *Identities // decrypt an encrypted backup
	Logger      *slog.Logger
}

// RestoreDataDir fills an empty data directory with a physical backup (m
// of drivers.MethodPhysical), needing no server: each object is unpacked by
// its format's Extract hook (drivers.Format) while it streams, checked
// against its SHA-256 as in Restore. The backup is self-contained: the
// server started on o.Dir replays the WAL the backup holds and opens; a
// point-in-time restore adds its recovery settings to o.Dir afterwards. On
// any error nothing that looks like a data directory is left, and a
// directory that held anything is never touched.
func RestoreDataDir(ctx context.Context, st storage.Storage, m *Manifest, o DataDirOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m.MethodName() != drivers.MethodPhysical {
		return fmt.Errorf("backup %s is a %s backup: a data directory is filled from a physical one (restore it with --database/--into instead)", m.ID, m.MethodName())
	}
	if o.Dir == "" {
		return errors.New("no data directory given: set --data-dir")
	}
	if _, err := codecByName(m.Compression); err != nil {
		return err
	}
	if m.Encryption != nil && o.Identities == nil {
		return errNeedsIdentity(m)
	}
	if err := o.Identities.expect(m); err != nil {
		return err
	}
	if len(m.Objects) != 1 || m.Objects[0].Kind != drivers.KindPhysical {
		return fmt.Errorf("%w: physical backup %s holds %d objects, want one %s object", ErrCorrupt, m.ID, len(m.Objects), drivers.KindPhysical)
	}
	rec := m.Objects[0]
	f, ok := drivers.FormatOf(rec.Format)
	if !ok || f.Extract == nil {
		return fmt.Errorf("backup %s: this remora cannot unpack objects of format %q: use a newer remora", m.ID, rec.Format)
	}
	log.Info("restoring", "object", rec.Key, "data_dir", o.Dir)
	r, err := openObject(ctx, st, m, o.Identities, rec, holdBack, true)
	if err != nil {
		return err
	}
	defer r.Close()
	if r.setupErr != nil {
		return r.explain(r.setupErr)
	}
	eo := drivers.ExtractOptions{Dir: o.Dir, Tablespaces: o.Tablespaces, Warn: func(msg string) { log.Warn(msg) }}
	if err := f.Extract(ctx, rec.Object, r, eo); err != nil {
		return fmt.Errorf("restore %s from backup %s: %w", rec.Key, m.ID, r.explain(err))
	}
	return r.finish()
}
