package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"remora.dev/remora/agent/storage"
	"remora.dev/remora/drivers"
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
	cod, err := codecByName(m.Compression)
	if err != nil {
		return err
	}
	if m.Encryption != nil && o.Identities == nil {
		_, err := decrypter(m, nil, nil)
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
		if err := restoreObject(ctx, st, cod, m, o.Identities, obj, drv, ropts); err != nil {
			return fmt.Errorf("restore %s from backup %s: %w", obj.Key, m.ID, err)
		}
	}
	return nil
}

func restoreObject(ctx context.Context, st storage.Storage, cod codec, m *Manifest, ids *Identities, obj ObjectRecord, drv drivers.Driver, opts drivers.RestoreOptions) error {
	r, err := st.Open(ctx, m.dir()+obj.Key)
	if isNotExist(err) {
		return fmt.Errorf("%w: %s is missing from storage", ErrCorrupt, obj.Key)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	cr := newCheckedReader(r, obj, holdBack)
	plain, err := decrypter(m, ids, cr)
	if err != nil {
		if cr.err != nil {
			return cr.err
		}
		return err
	}
	dr, err := cod.newReader(plain)
	if err != nil {
		if cr.err != nil {
			return cr.err
		}
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, obj.Key, err)
	}
	defer dr.Close()
	dec := &errRecorder{r: dr}
	if err := drv.Restore(ctx, obj.Object, dec, opts); err != nil {
		switch {
		case cr.err != nil && errors.Is(cr.err, ErrCorrupt):
			return cr.err
		case dec.err != nil && cr.err == nil:
			// The stored bytes arrived, but do not decrypt or decompress.
			return fmt.Errorf("%w: %s does not decrypt or decompress: %v (%v)", ErrCorrupt, obj.Key, dec.err, err)
		}
		return err
	}
	// The tool is done. Make sure the whole object was read and matched.
	if !cr.eof {
		if _, err := io.Copy(io.Discard, cr); err != nil {
			return fmt.Errorf("the restore tool finished, but the rest of the object failed its check: %w", err)
		}
	}
	return nil
}

// errRecorder remembers the first error other than EOF its reader returned.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}
