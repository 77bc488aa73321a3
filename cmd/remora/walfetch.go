package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/pitr"
	"remora.dev/remora/repo"
)

// walFetchCommand is `remora wal-fetch FILE DEST`: one archived WAL file,
// checked and decrypted, written to DEST. It is a restore_command for a
// PostgreSQL that can run Remora with the storage's credentials (a
// standby fed from the archive, a recovery set up by hand):
// restore_command = 'remora wal-fetch %f %p'. `restore --to-time` puts the
// WAL in pg_wal itself and needs none of this.
type walFetchCommand struct {
	env           *environment
	c             common
	system        string
	identity      string
	allowUnsigned bool
}

func (w *walFetchCommand) Run(ctx context.Context, args []string) error {
	fs := w.env.newFlagSet("wal-fetch", "wal-fetch FILE DEST [flags]")
	w.c.addFlags(fs, false)
	choiceString(fs, &w.system, "system", "the cluster's system identifier, when the archive holds several clusters' WAL (default: that of the newest physical backup)")
	identityFlag(fs, &w.identity)
	allowUnsignedFlag(fs, &w.allowUnsigned)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("wal-fetch takes the WAL file's name and where to write it (%%f %%p)")
	}
	if w.c.driver == "" {
		w.c.driver = postgres.Name
	}
	w.c.credentials()
	log, err := w.c.logger(w.env)
	if err != nil {
		return err
	}
	ids, err := repo.LoadIdentities(w.identity)
	if err != nil {
		return usage(err)
	}
	_, trust, err := w.c.keys()
	if err != nil {
		return err
	}
	trust.AllowUnsigned = w.allowUnsigned
	st, err := w.c.openStorage(ctx, w.env, log)
	if err != nil {
		return err
	}
	w.c.method = drivers.MethodPhysical
	entries, err := w.c.list(ctx, st, trust)
	if err != nil {
		return err
	}
	scope := w.c.scope()
	scope.Method = ""
	logs, err := repo.ListLogs(ctx, st, scope)
	if err != nil {
		return err
	}
	e, segSize, err := w.pick(pos[0], logs, entries)
	if err != nil {
		return err
	}
	data, _, err := repo.FetchLog(ctx, st, scope, e, trust, ids)
	if err != nil {
		return err
	}
	if e.Partial {
		data = append(data, make([]byte, int(segSize)-len(data))...)
	}
	return writeAtomically(pos[1], data)
}

// pick finds the archived file a name asks for: the whole segment (or
// history file), else the largest partial of the segment, of the cluster
// --system names or the newest physical backup's; and the segment size
// that pads a partial.
func (w *walFetchCommand) pick(name string, logs []repo.LogEntry, entries []repo.Entry) (repo.LogEntry, uint64, error) {
	bases, _ := pitr.Bases(entries)
	system, segSize := w.system, uint64(16<<20)
	for _, b := range bases {
		if system == "" || b.System == system {
			system, segSize = b.System, b.SegSize
		}
	}
	var best *repo.LogEntry
	for i, e := range logs {
		if e.Name != name || system != "" && e.System != system {
			continue
		}
		if best != nil && best.System != e.System {
			return repo.LogEntry{}, 0, fmt.Errorf("%s is archived for clusters %s and %s: give --system", name, best.System, e.System)
		}
		if best == nil || best.Partial && (!e.Partial || e.PartSize > best.PartSize) {
			best = &logs[i]
		}
	}
	if best == nil {
		return repo.LogEntry{}, 0, fmt.Errorf("%w: %s is not in the WAL archive", errNotArchived, name)
	}
	if best.Partial && w.system == "" && len(bases) == 0 {
		return repo.LogEntry{}, 0, errors.New("only a partial of " + name + " is archived, and without a physical backup the segment size it is padded to is unknown")
	}
	return *best, segSize, nil
}

// errNotArchived: the file asked for is not in the archive; PostgreSQL
// takes the failure as "no such file" and goes on.
var errNotArchived = errors.New("not archived")

// writeAtomically writes a file whole or not at all.
func writeAtomically(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".remora-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
