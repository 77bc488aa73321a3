package drivers

import (
	"context"
	"io"
)

// withFiles is a database driver that also archives paths: its backups hold
// a files object beside the database's, and its restores hand files objects
// to the files driver.
type withFiles struct {
	db, files Driver
	dump      bool // add a files object to every backup (false: restore only)
}

func (w *withFiles) Plan(ctx context.Context) (*Plan, error) {
	plan, err := w.db.Plan(ctx)
	if err != nil || !w.dump {
		return plan, err
	}
	fp, err := w.files.Plan(ctx)
	if err != nil {
		return nil, err
	}
	plan.Objects = append(plan.Objects, fp.Objects...)
	return plan, nil
}

func (w *withFiles) pick(obj Object) Driver {
	if obj.Kind == KindFiles {
		return w.files
	}
	return w.db
}

func (w *withFiles) Dump(ctx context.Context, obj Object, wr io.Writer) error {
	return w.pick(obj).Dump(ctx, obj, wr)
}

// DumpMeta hands the Meta a dump learns back from either driver.
func (w *withFiles) DumpMeta(ctx context.Context, obj Object, wr io.Writer) (map[string]string, error) {
	return DumpMeta(ctx, w.pick(obj), obj, wr)
}

func (w *withFiles) CheckRestore(ctx context.Context, objs []Object, opts RestoreOptions) error {
	var files, db []Object
	for _, o := range objs {
		if o.Kind == KindFiles {
			files = append(files, o)
		} else {
			db = append(db, o)
		}
	}
	if len(files) > 0 {
		if err := w.files.CheckRestore(ctx, files, opts); err != nil {
			return err
		}
	}
	if len(db) > 0 {
		return w.db.CheckRestore(ctx, db, opts)
	}
	return nil
}

func (w *withFiles) Restore(ctx context.Context, obj Object, r io.Reader, opts RestoreOptions) error {
	return w.pick(obj).Restore(ctx, obj, r, opts)
}

// Replica asks the database driver, when it can tell.
func (w *withFiles) Replica(ctx context.Context) (bool, error) {
	if r, ok := w.db.(Roler); ok {
		return r.Replica(ctx)
	}
	return false, ErrNoRole
}

// Observe asks the driver of obj, if it observes.
func (w *withFiles) Observe(ctx context.Context, obj Object, opts RestoreOptions) (map[string]string, error) {
	if o, ok := w.pick(obj).(Observer); ok {
		return o.Observe(ctx, obj, opts)
	}
	return nil, nil
}
