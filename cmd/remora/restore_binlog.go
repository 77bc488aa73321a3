package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/pitr"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// pointInBinlog reports whether the restore is MySQL's point in time: a
// dump and the archived binary log after it, replayed into the server.
func (r *restoreCommand) pointInBinlog() bool {
	return r.c.driver == mysql.Name && r.dataDir == "" && r.point.set()
}

// restoreBinlogs loads the newest dump before the target and replays the
// archived binary log from each database's position to the target. Every
// file it needs is fetched and checked before the server is touched.
func (r *restoreCommand) restoreBinlogs(ctx context.Context, st storage.Storage, entries []repo.Entry, ids *repo.Identities, log *slog.Logger, trust repo.Trust) error {
	until, err := r.binlogTarget()
	if err != nil {
		return err
	}
	d, err := pitr.ChooseDump(pitr.Dumps(entries), until, r.database)
	if err != nil {
		return err
	}
	dbs := slices.Sorted(maps.Keys(d.Positions))
	if r.database != "" {
		dbs = []string{r.database}
	}
	dir, err := os.MkdirTemp("", "remora-binlog-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	scope := r.c.scope()
	scope.Method = ""
	from := d.Earliest(dbs...)
	log.Info("fetching the archived binary log", "backup", d.ID, "from", fmt.Sprintf("%s@%d", from.File, from.Pos), "target", targetName(until))
	fetched, err := pitr.FetchBinlogs(ctx, st, scope, trust, ids, from, d.Finished, until, dir)
	if err != nil {
		return fmt.Errorf("nothing restored: %w", err)
	}
	e := findEntry(entries, d.ID)
	drv, err := drivers.New(mysql.Name, drivers.Config{DSN: r.c.dsn, RestoreFiles: e.Manifest.HasFiles()})
	if err != nil {
		return usage(err)
	}
	log.Info("restoring backup", "id", d.ID, "databases", dbs)
	if err := repo.Restore(ctx, st, e.Manifest, drv, repo.RestoreOptions{
		Database: r.database, Into: r.into, Yes: r.yes, NoGlobals: r.noGlobals, Identities: ids, Logger: log,
	}); err != nil {
		return err
	}
	if err := replayEach(ctx, drv.(*mysql.Driver), d, dbs, fetched, until, r.into, log); err != nil {
		return err
	}
	fmt.Fprintf(r.env.stdout, "restored backup %s and replayed the binary log (%d pieces, %d files) to %s; newest event replayed before %s\n",
		d.ID, fetched.Pieces, len(fetched.Files), targetName(until), fetched.Reached.UTC().Format(time.RFC3339))
	warnUnchecked(log, trust)
	return nil
}

// binlogTarget reads --to-time or --to-latest (zero time).
func (r *restoreCommand) binlogTarget() (time.Time, error) {
	switch {
	case r.point.toLSN != "":
		return time.Time{}, usagef("--to-lsn is a PostgreSQL WAL position: a MySQL restore takes --to-time or --to-latest")
	case r.point.toTime != "" && r.point.toLatest:
		return time.Time{}, usagef("give one of --to-time and --to-latest")
	case r.point.toTime != "":
		t, err := parseTime(r.point.toTime)
		if err != nil {
			return t, usage(err)
		}
		return t, nil
	}
	return time.Time{}, nil
}

func targetName(t time.Time) string {
	if t.IsZero() {
		return "the end of the archive"
	}
	return t.UTC().Format(time.RFC3339)
}

// replayEach replays, for each database, the binary log from the position
// its own dump was taken at: the databases' dumps are separate snapshots.
func replayEach(ctx context.Context, drv *mysql.Driver, d pitr.Dump, dbs []string, f *pitr.Fetched, until time.Time, into string, log *slog.Logger) error {
	for _, db := range dbs {
		pos := d.Positions[db]
		i := slices.IndexFunc(f.Files, func(l pitr.Local) bool { return l.Name == pos.File })
		if i < 0 {
			return fmt.Errorf("database %s was restored from backup %s, but the binary log %s its replay starts in was not fetched", db, d.ID, pos.File)
		}
		var files []string
		for _, l := range f.Files[i:] {
			files = append(files, l.Path)
		}
		log.Info("replaying the binary log", "database", db, "from", fmt.Sprintf("%s@%d", pos.File, pos.Pos), "files", len(files))
		if err := drv.Replay(ctx, mysql.ReplayOptions{Files: files, Start: pos.Pos, Stop: until, Database: db, Into: into}); err != nil {
			return fmt.Errorf("database %s was restored from backup %s, but replaying its binary log failed part way: %w", db, d.ID, err)
		}
	}
	return nil
}

func findEntry(entries []repo.Entry, id string) *repo.Entry {
	for i := range entries {
		if entries[i].Manifest.ID == id && entries[i].Manifest.Driver == mysql.Name {
			return &entries[i]
		}
	}
	return nil
}
