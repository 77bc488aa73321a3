// Package drill runs restore drills: a backup is restored into a throwaway
// server that the drill starts itself (a PostgreSQL, MariaDB or
// redis-server on a unix socket in a temporary directory, or a temporary
// directory for files), checked against what its dump recorded (rows per
// table, keys per database, file sums: the drivers' CheckPrefix Meta), and
// everything is removed again. Checksums prove the bytes are the bytes that
// were written; only a restore proves they are a database.
package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/prio"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// Options say how a drill runs.
type Options struct {
	Identities *repo.Identities // decrypt an encrypted backup
	// User is the database user the pod's DSN names: a physical backup's
	// server is entered as it (its own roles are all it knows).
	User string
	// TempDir holds the drill's directory; empty: the system's.
	TempDir string
	Logger  *slog.Logger
	// Priority is the CPU and I/O priority of the drill's work, its
	// server's included (remora.dev/priority); empty: prio.Default.
	Priority prio.Priority
}

// ErrSetup is a drill that could not be run (no server programs, no
// temporary directory): nothing about the backup was learnt.
var ErrSetup = errors.New("the drill could not be run")

// Run drills backup e and returns what it found. A backup that does not
// restore, or whose restore does not match its dump's checks, gives a
// record with OK false and the reasons; an error means the drill itself
// could not run (ErrSetup) or was stopped (ctx). Everything the drill made
// is removed before Run returns, however it ends.
func Run(ctx context.Context, st storage.Storage, e *repo.Entry, o Options) (repo.Drill, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := e.Err(); err != nil {
		return repo.Drill{}, err
	}
	started := time.Now()
	dir, err := os.MkdirTemp(o.TempDir, "remora-drill-")
	if err != nil {
		return repo.Drill{}, fmt.Errorf("%w: %v", ErrSetup, err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // a server run as another user (Remora as root) enters it
		return repo.Drill{}, fmt.Errorf("%w: %v", ErrSetup, err)
	}
	peak, sample := startPeak()
	r := &runner{st: st, m: e.Manifest, o: o, dir: dir, sample: sample}
	if o.Priority == "" {
		o.Priority = prio.Default
	}
	lowered := prio.With(ctx, o.Priority, o.Logger)
	prio.Run(lowered, func() { err = r.run(lowered) })
	d := repo.Drill{Time: started.UTC(), Seconds: time.Since(started).Seconds(), PeakRSSBytes: peak(), Checks: r.checks, Problems: r.problems}
	switch {
	case ctx.Err() != nil:
		return repo.Drill{}, ctx.Err()
	case errors.Is(err, ErrSetup), errors.Is(err, drivers.ErrNoServer):
		return repo.Drill{}, fmt.Errorf("%w: %v", ErrSetup, err)
	case err != nil:
		d.Problems = append(d.Problems, err.Error())
	}
	for _, c := range d.Checks {
		if !c.OK {
			d.Problems = append(d.Problems, fmt.Sprintf("%s: %s: want %s, got %s", c.Object, c.What, c.Want, c.Got))
		}
	}
	d.OK = len(d.Problems) == 0
	return d, nil
}

// runner is one drill under way.
type runner struct {
	st       storage.Storage
	m        *repo.Manifest
	o        Options
	dir      string
	checks   []repo.DrillCheck
	problems []string
	sample   func() // reads the started processes' memory now, while the server is up
}

func (r *runner) run(ctx context.Context) error {
	if r.m.MethodName() == drivers.MethodPhysical {
		return r.physical(ctx)
	}
	var files, others []repo.ObjectRecord
	for _, obj := range r.m.Objects {
		if obj.Kind == drivers.KindFiles {
			files = append(files, obj)
		} else {
			others = append(others, obj)
		}
	}
	if len(others) > 0 {
		if err := r.into(ctx, r.m.Driver, "server", others); err != nil {
			return err
		}
	}
	if len(files) > 0 {
		return r.into(ctx, drivers.Files, "files", files)
	}
	return nil
}

// into starts a throwaway target of the named driver in a directory of its
// own, restores objs into it, checks them, and stops it.
func (r *runner) into(ctx context.Context, driver, sub string, objs []repo.ObjectRecord) error {
	dir := filepath.Join(r.dir, sub)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrSetup, err)
	}
	sc, err := drivers.StartScratch(ctx, driver, drivers.ScratchOptions{Dir: dir})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSetup, err) // an empty server that does not start says nothing of the backup
	}
	defer sc.Stop()
	drv, err := drivers.New(driver, drivers.Config{DSN: sc.DSN})
	if err != nil {
		return err
	}
	opts := drivers.RestoreOptions{Into: sc.Into, Yes: true, Warn: func(msg string) { r.o.Logger.Warn(msg) }}
	first, last := globalsOrder(driver, objs)
	if err := r.restore(ctx, drv, first, opts); err != nil {
		return err
	}
	for _, obj := range first {
		if err := r.observe(ctx, drv, obj.Object, opts); err != nil {
			return err
		}
	}
	return r.restore(ctx, drv, last, opts)
}

// globalsOrder splits a backup's objects into those restored (and checked)
// first and those restored last. PostgreSQL's roles come first: the
// databases' objects name their owners. MySQL/MariaDB's accounts come
// last: they replace the throwaway server's own root, which the drill
// logs in as, and grants may name databases not yet there.
func globalsOrder(driver string, objs []repo.ObjectRecord) (first, last []repo.ObjectRecord) {
	var globals, rest []repo.ObjectRecord
	for _, o := range objs {
		if o.Kind == drivers.KindGlobals {
			globals = append(globals, o)
		} else {
			rest = append(rest, o)
		}
	}
	if driver == "postgres" {
		return append(globals, rest...), nil
	}
	return rest, globals
}

// restore loads objs into the throwaway server, in order.
func (r *runner) restore(ctx context.Context, drv drivers.Driver, objs []repo.ObjectRecord, opts drivers.RestoreOptions) error {
	for _, obj := range objs {
		r.o.Logger.Info("drill: restoring", "object", obj.Key)
		if err := repo.RestoreObject(ctx, r.st, r.m, r.o.Identities, obj, drv, opts); err != nil {
			return fmt.Errorf("restore of %s failed: %w", obj.Name, err)
		}
	}
	return nil
}

// physical fills a data directory from the backup and starts a server on
// it: a server that opens (recovers to the backup's end) and reads every
// table is the check.
func (r *runner) physical(ctx context.Context) error {
	if len(r.m.Objects) != 1 {
		return fmt.Errorf("physical backup %s holds %d objects, want one", r.m.ID, len(r.m.Objects))
	}
	obj := r.m.Objects[0]
	data := filepath.Join(r.dir, "data")
	r.o.Logger.Info("drill: restoring a data directory", "object", obj.Key)
	if err := repo.RestoreDataDir(ctx, r.st, r.m, repo.DataDirOptions{Dir: data, Identities: r.o.Identities, Logger: r.o.Logger}); err != nil {
		return fmt.Errorf("restore of %s failed: %w", obj.Name, err)
	}
	sc, err := drivers.StartScratch(ctx, r.m.Driver, drivers.ScratchOptions{Dir: r.dir, DataDir: data, User: r.o.User, Meta: obj.Meta})
	if err != nil {
		return err
	}
	defer sc.Stop()
	drv, err := drivers.New(r.m.Driver, drivers.Config{DSN: sc.DSN})
	if err != nil {
		return err
	}
	return r.observe(ctx, drv, obj.Object, drivers.RestoreOptions{})
}

// observe reads back obj's checks from the restored target and compares
// them with what the dump recorded. A physical object records none: what
// the server reports is the check, and it passed if it could be read.
func (r *runner) observe(ctx context.Context, drv drivers.Driver, obj drivers.Object, opts drivers.RestoreOptions) error {
	r.sample() // a drill shorter than the sampling interval is still measured
	ob, ok := drv.(drivers.Observer)
	if !ok {
		return nil
	}
	got, err := ob.Observe(ctx, obj, opts)
	if err != nil {
		return fmt.Errorf("reading %s back after its restore: %w", obj.Name, err)
	}
	if obj.Kind == drivers.KindPhysical {
		for k, v := range got {
			r.checks = append(r.checks, repo.DrillCheck{Object: obj.Name, What: what(k), Want: "readable", Got: v, OK: true})
		}
		return nil
	}
	var keys []string
	for k := range obj.Meta {
		if strings.HasPrefix(k, drivers.CheckPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, found := got[k]
		if !found {
			g = "missing"
		}
		r.checks = append(r.checks, repo.DrillCheck{Object: obj.Name, What: what(k), Want: obj.Meta[k], Got: g, OK: found && drivers.CheckMatches(obj.Meta[k], g)})
	}
	return nil
}

// what describes a check key: "check.rows.x" is "rows of x".
func what(key string) string {
	k := strings.TrimPrefix(key, drivers.CheckPrefix)
	kind, rest, ok := strings.Cut(k, ".")
	if !ok {
		return k
	}
	return kind + " of " + rest
}
