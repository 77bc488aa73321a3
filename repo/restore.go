package repo

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"remora.dev/remora/drivers"
	"remora.dev/remora/storage"
)

// RestoreOptions say what to restore and where.
type RestoreOptions struct {
	Database   string      // restore only this database; empty: all of them
	Into       string      // restore the (single) database under this name
	Yes        bool        // allow overwriting what exists
	NoGlobals  bool        // skip roles and tablespaces in a full restore
	Identities *Identities // decrypt an encrypted backup
	Logger     *slog.Logger
}

// holdBack is how much of each object a restore holds back until the whole
// object has matched its checksum: more than one compressed block, so a tool
// reading it cannot reach the end of a corrupt object.
const holdBack = 256 << 10

// Restore loads a backup through the driver. Roles and tablespaces (the
// globals object) come first, and only in a full restore: every database,
// under its own name. Each object is checked against its SHA-256 while it
// streams, and the tool loading it never sees the end of an object that
// does not match.
func Restore(ctx context.Context, st storage.Storage, m *Manifest, drv drivers.Driver, o RestoreOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !Logical(m.Method) {
		return fmt.Errorf("backup %s is a physical backup: it fills a new data directory (remora restore --data-dir DIR), not a running server", m.ID)
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
	var dbs, globals []ObjectRecord
	for _, obj := range m.Objects {
		switch obj.Kind {
		case drivers.KindDatabase, drivers.KindFiles:
			if o.Database == "" || obj.Database == o.Database {
				dbs = append(dbs, obj)
			}
		case drivers.KindGlobals:
			globals = append(globals, obj)
		}
	}
	if o.Database != "" && len(dbs) == 0 {
		return fmt.Errorf("%w: backup %s has no database %q (it has: %s)", ErrNotFound, m.ID, o.Database, strings.Join(m.Databases, ", "))
	}
	if o.Into != "" && len(dbs) != 1 {
		return fmt.Errorf("backup %s holds %d databases (%s): choose one with --database to restore --into %q", m.ID, len(dbs), strings.Join(m.Databases, ", "), o.Into)
	}
	objs := dbs
	if o.Database == "" && o.Into == "" && !o.NoGlobals {
		objs = append(globals, dbs...)
	} else if len(globals) > 0 {
		log.Info("server-wide objects (roles, users, grants, tablespaces) are not restored: only a full restore (no --database, no --into) restores them")
	}
	ropts := drivers.RestoreOptions{Into: o.Into, Yes: o.Yes, Warn: func(msg string) { log.Warn(msg) }}
	plain := make([]drivers.Object, len(objs))
	for i, obj := range objs {
		plain[i] = obj.Object
	}
	if err := drv.CheckRestore(ctx, plain, ropts); err != nil {
		return err
	}
	for _, obj := range objs {
		log.Info("restoring", "object", obj.Key, "database", obj.Database, "into", o.Into)
		if err := restoreObject(ctx, st, m, o.Identities, obj, drv, ropts); err != nil {
			return fmt.Errorf("restore %s from backup %s: %w", obj.Key, m.ID, err)
		}
	}
	return nil
}

func restoreObject(ctx context.Context, st storage.Storage, m *Manifest, ids *Identities, rec ObjectRecord, drv drivers.Driver, opts drivers.RestoreOptions) error {
	o, err := openObject(ctx, st, m, ids, rec, holdBack, true)
	if err != nil {
		return err
	}
	defer o.Close()
	if o.setupErr != nil {
		return o.explain(o.setupErr)
	}
	if err := drv.Restore(ctx, rec.Object, o, opts); err != nil {
		return o.explain(err)
	}
	// The tool is done. Make sure the whole object was read and matched.
	if err := o.finish(); err != nil {
		return fmt.Errorf("the restore tool finished, but the rest of the object failed its check: %w", err)
	}
	return nil
}
