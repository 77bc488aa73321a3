package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/pitr"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// pointFlags are restore's point-in-time choices (PostgreSQL, with
// --data-dir): a base backup and the archived WAL after it, replayed to
// a time, an LSN or the end of the archive.
type pointFlags struct {
	toTime   string
	toLSN    string
	toLatest bool
	ifEmpty  bool
}

func (p *pointFlags) define(fs *flag.FlagSet) {
	choiceString(fs, &p.toTime, "to-time", "recover to this time (RFC 3339, or UTC): PostgreSQL with --data-dir; MySQL/MariaDB from a dump and the binary log (to the second)")
	choiceString(fs, &p.toLSN, "to-lsn", "with --data-dir: recover up to this WAL position (e.g. 0/3000060)")
	choiceBool(fs, &p.toLatest, "to-latest", "recover everything the WAL or binary log archive holds")
	choiceBool(fs, &p.ifEmpty, "if-empty", "with --data-dir: when the directory already holds a data directory, do nothing and succeed (for an init container that runs at every start)")
}

// set reports whether a point in time was asked for.
func (p *pointFlags) set() bool { return p.toTime != "" || p.toLSN != "" || p.toLatest }

// target reads the point in time.
func (p *pointFlags) target() (pitr.Target, error) {
	n := 0
	var t pitr.Target
	if p.toTime != "" {
		tm, err := parseTime(p.toTime)
		if err != nil {
			return t, usage(err)
		}
		t.Time, n = tm, n+1
	}
	if p.toLSN != "" {
		l, err := postgres.ParseLSN(p.toLSN)
		if err != nil || l == 0 {
			return t, usagef("--to-lsn %q: want a WAL position such as 0/3000060", p.toLSN)
		}
		t.LSN, n = l, n+1
	}
	if p.toLatest {
		t.Latest, n = true, n+1
	}
	if n > 1 {
		return t, usagef("give one of --to-time, --to-lsn and --to-latest")
	}
	return t, nil
}

// holdsDataDir reports whether dir holds a PostgreSQL data directory.
func holdsDataDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "PG_VERSION"))
	return err == nil
}

// restoreToPoint fills --data-dir from the newest physical backup before
// the target and the archived WAL after it, and configures the recovery.
// If the WAL cannot reach the target, what was put in the directory is
// removed again.
func (r *restoreCommand) restoreToPoint(ctx context.Context, st storage.Storage, entries []repo.Entry, ids *repo.Identities, log *slog.Logger, trust repo.Trust) error {
	t, err := r.point.target()
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(r.dataDir)
	if err != nil {
		return usage(err)
	}
	bases, byID := pitr.Bases(entries)
	base, err := pitr.ChooseBase(bases, t)
	if err != nil {
		return err
	}
	ts, err := r.tablespaces()
	if err != nil {
		return err
	}
	existed := dirExists(dir)
	log.Info("restoring a base backup for point-in-time recovery", "id", base.ID, "target", t.String(), "data_dir", dir)
	opts := repo.DataDirOptions{Dir: dir, Tablespaces: ts, Identities: ids, Logger: log}
	if err := repo.RestoreDataDir(ctx, st, byID[base.ID].Manifest, opts); err != nil {
		return err
	}
	scope := r.c.scope()
	scope.Method = ""
	rec, err := pitr.Recover(ctx, st, scope, trust, ids, base, dir, t)
	if err != nil {
		if cerr := clearDir(dir, existed); cerr != nil {
			log.Error("could not remove the unfinished data directory", "dir", dir, "error", cerr)
		}
		return fmt.Errorf("nothing restored: %w", err)
	}
	fmt.Fprintf(r.env.stdout, "recovery to %s configured in %s: base backup %s, %d WAL files up to %s; start PostgreSQL on it and it promotes at the target\n",
		t, dir, base.ID, rec.Files, rec.Last)
	warnUnchecked(log, trust)
	return nil
}

func dirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// clearDir removes what a failed restore put in dir: dir itself when the
// restore made it, else its content (a mount point that was empty).
func clearDir(dir string, existed bool) error {
	if !existed {
		return os.RemoveAll(dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
