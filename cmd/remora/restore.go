package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"remora.dev/remora/control"
	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/repo"
	"remora.dev/remora/sidecar"
	"remora.dev/remora/storage"
)

type restoreCommand struct {
	env       *environment
	c         common
	latest    bool
	before    string
	database  string
	into      string
	yes       bool
	noGlobals bool
	identity  string
	// allowUnsigned accepts a backup without a signature.
	allowUnsigned bool
	socket        string
	dataDir       string
	tablespaceMap listFlag // OID=DIR
	point         pointFlags
}

func (r *restoreCommand) Run(ctx context.Context, args []string) error {
	pos, err := r.parse(args)
	if err != nil {
		return err
	}
	if r.dataDir != "" && r.point.ifEmpty && holdsDataDir(r.dataDir) {
		fmt.Fprintf(r.env.stdout, "%s already holds a data directory: nothing restored (--if-empty)\n", r.dataDir)
		return nil
	}
	sel, err := r.selection(pos)
	if err != nil {
		return err
	}
	r.c.credentials()
	log, err := r.c.logger(r.env)
	if err != nil {
		return err
	}
	if r.dataDir == "" {
		// A data directory is no server's: only a restore into one waits
		// for the agent.
		release, err := r.lock(ctx)
		if err != nil {
			return err
		}
		defer release()
	}
	ids, err := repo.LoadIdentities(r.identity)
	if err != nil {
		return usage(err)
	}
	_, trust, err := r.c.keys()
	if err != nil {
		return err
	}
	trust.AllowUnsigned = r.allowUnsigned
	st, err := r.c.openStorage(ctx, r.env, log)
	if err != nil {
		return err
	}
	entries, err := r.c.list(ctx, st, trust)
	if err != nil {
		return err
	}
	if r.pointInBinlog() {
		return r.restoreBinlogs(ctx, st, entries, ids, log, trust)
	}
	if r.point.set() {
		return r.restoreToPoint(ctx, st, entries, ids, log, trust)
	}
	e, err := repo.Select(entries, sel)
	if err != nil {
		return err
	}
	warnSkipped(log, entries, e)
	m := e.Manifest
	if e.Verification != nil && !e.Verification.OK {
		return fmt.Errorf("%w: backup %s failed its last verification: %v", repo.ErrCorrupt, m.ID, e.Verification.Problems)
	}
	if r.dataDir != "" {
		return r.restoreDataDir(ctx, st, m, ids, log, trust)
	}
	drv, err := drivers.New(m.Driver, drivers.Config{DSN: r.c.dsn, RestoreFiles: m.HasFiles()})
	if err != nil {
		return usage(err)
	}
	log.Info("restoring backup", "id", m.ID, "driver", m.Driver, "databases", m.Databases)
	if err := repo.Restore(ctx, st, m, drv, repo.RestoreOptions{
		Database: r.database, Into: r.into, Yes: r.yes, NoGlobals: r.noGlobals, Identities: ids, Logger: log,
	}); err != nil {
		return err
	}
	fmt.Fprintf(r.env.stdout, "restored backup %s\n", m.ID)
	warnUnchecked(log, trust)
	return nil
}

// parse reads the arguments and picks the method.
func (r *restoreCommand) parse(args []string) ([]string, error) {
	fs := r.env.newFlagSet("restore", "restore ID|--latest|--before TIME [--database NAME] [--into NAME] [--yes] | --to-time TIME|--to-latest [--database NAME] [--into NAME] [--yes] (MySQL) | --data-dir DIR [ID|--latest|--before TIME|--to-time TIME|--to-lsn LSN|--to-latest] [flags]")
	r.flags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	return pos, r.chooseMethod()
}

// flags defines restore's flags.
func (r *restoreCommand) flags(fs *flag.FlagSet) {
	r.c.addFlags(fs, true)
	r.c.methodChoice(fs)
	choiceString(fs, &r.dataDir, "data-dir", "PostgreSQL: fill this new (or empty) directory from a physical backup, to start a server on; no server is touched")
	invocationFlags["tablespace-map"] = true
	fs.Var(&r.tablespaceMap, "tablespace-map", "with --data-dir: put tablespace OID's files in DIR instead of where they were (OID=DIR; repeat for several)")
	choiceBool(fs, &r.latest, "latest", "restore the newest backup")
	choiceString(fs, &r.before, "before", "restore the newest backup taken at or before this time (RFC 3339, or UTC)")
	choiceString(fs, &r.database, "database", "restore only this database of the backup")
	choiceString(fs, &r.into, "into", "restore the database under this name instead of its own (created if missing)")
	choiceBool(fs, &r.yes, "yes", "allow overwriting existing databases and roles")
	choiceBool(fs, &r.noGlobals, "no-globals", "in a full restore, leave roles and tablespaces alone")
	r.point.define(fs)
	identityFlag(fs, &r.identity)
	allowUnsignedFlag(fs, &r.allowUnsigned)
	stringFlag(fs, &r.socket, "socket", sidecar.SocketPath, "the agent's control socket; a restore never runs while the agent backs up")
}

// chooseMethod picks the method of the backups a restore considers:
// --data-dir fills a data directory from a physical backup; anything else
// restores a logical one into a server.
func (r *restoreCommand) chooseMethod() error {
	if r.dataDir == "" {
		if len(r.tablespaceMap.values) > 0 {
			return usagef("--tablespace-map goes with --data-dir")
		}
		if r.point.set() && !r.point.ifEmpty && r.c.driver == mysql.Name {
			r.c.method = drivers.MethodLogical // a dump and the binary log after it
			return nil
		}
		if r.point.set() || r.point.ifEmpty {
			return usagef("--to-time, --to-lsn, --to-latest and --if-empty recover a PostgreSQL data directory: add --data-dir DIR")
		}
		if r.c.method == drivers.MethodPhysical {
			return usagef("a physical backup is restored into a new data directory: add --data-dir DIR")
		}
		r.c.method = drivers.MethodLogical
		return nil
	}
	if r.database != "" || r.into != "" || r.noGlobals {
		return usagef("--data-dir fills a data directory from a physical backup; --database, --into and --no-globals restore a logical one into a server: give one or the other")
	}
	if r.c.method == drivers.MethodLogical {
		return usagef("--data-dir is filled from a physical backup, not a logical one: drop --method logical")
	}
	r.c.method = drivers.MethodPhysical
	return nil
}

// tablespaces reads --tablespace-map OID=DIR.
func (r *restoreCommand) tablespaces() (map[string]string, error) {
	out := map[string]string{}
	for _, v := range r.tablespaceMap.values {
		oid, dir, ok := strings.Cut(v, "=")
		if !ok || oid == "" || strings.Trim(oid, "0123456789") != "" || !filepath.IsAbs(dir) {
			return nil, usagef("--tablespace-map %q: want OID=/absolute/dir, e.g. 16384=/var/lib/postgresql/ts1", v)
		}
		out[oid] = filepath.Clean(dir)
	}
	return out, nil
}

// restoreDataDir fills --data-dir from physical backup m.
func (r *restoreCommand) restoreDataDir(ctx context.Context, st storage.Storage, m *repo.Manifest, ids *repo.Identities, log *slog.Logger, trust repo.Trust) error {
	ts, err := r.tablespaces()
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(r.dataDir)
	if err != nil {
		return usage(err)
	}
	log.Info("restoring backup into a data directory", "id", m.ID, "driver", m.Driver, "data_dir", dir)
	if err := repo.RestoreDataDir(ctx, st, m, repo.DataDirOptions{Dir: dir, Tablespaces: ts, Identities: ids, Logger: log}); err != nil {
		return err
	}
	fmt.Fprintf(r.env.stdout, "restored backup %s into %s: start PostgreSQL on it\n", m.ID, dir)
	warnUnchecked(log, trust)
	return nil
}

// warnSkipped names the newer backups that a restore by time passed over
// because they cannot be used (damaged, or not signed by a trusted key).
func warnSkipped(log *slog.Logger, entries []repo.Entry, chosen *repo.Entry) {
	for _, e := range entries {
		if e.Manifest.ID > chosen.Manifest.ID && e.Problem != "" {
			log.Warn("passed over a newer backup that cannot be used", "id", e.Manifest.ID, "problem", e.Problem)
		}
	}
}

// selection reads which backup to restore: as selector does, unless a
// point in time chooses it.
func (r *restoreCommand) selection(pos []string) (repo.Selector, error) {
	if !r.point.set() {
		return r.selector(pos)
	}
	if len(pos) > 0 || r.latest || r.before != "" {
		return repo.Selector{}, usagef("a point in time chooses its base backup itself: drop the ID, --latest and --before")
	}
	return repo.Selector{}, nil
}

// selector reads which backup to restore: one ID, --latest or --before.
func (r *restoreCommand) selector(pos []string) (repo.Selector, error) {
	sel := repo.Selector{Latest: r.latest}
	n := 0
	if len(pos) == 1 {
		sel.ID = pos[0]
		n++
	}
	if r.latest {
		n++
	}
	if r.before != "" {
		t, err := parseTime(r.before)
		if err != nil {
			return sel, usage(err)
		}
		sel.Before = t
		n++
	}
	if len(pos) > 1 || n != 1 {
		return sel, usagef("say which backup to restore: one ID, or --latest, or --before TIME")
	}
	return sel, nil
}

// lock takes the pod's lock, or says which backup holds it.
func (r *restoreCommand) lock(ctx context.Context) (func(), error) {
	release, err := control.Lock(r.socket)
	if errors.Is(err, control.ErrBusy) {
		msg := "a backup is running in this pod"
		if c, derr := control.Dial(r.socket); derr == nil {
			if st, serr := c.Status(ctx); serr == nil && st.Running != nil {
				msg = fmt.Sprintf("a backup is running in this pod (run %d, since %s)", st.Running.Run, st.Running.Started.UTC().Format("15:04:05"))
			}
		}
		return nil, fmt.Errorf("restore refused, nothing was changed: %s; wait for it to finish (remora status) and run the restore again", msg)
	}
	return release, err
}
