package pitr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// Target is where a restore stops replaying WAL.
type Target struct {
	Time   time.Time    // every transaction committed at or before Time, none after
	LSN    postgres.LSN // or everything before LSN
	Latest bool         // or everything the archive holds
}

func (t Target) String() string {
	switch {
	case t.Latest:
		return "the end of the archive"
	case t.LSN != 0:
		return "LSN " + t.LSN.String()
	}
	return t.Time.UTC().Format(time.RFC3339Nano)
}

// ChooseBase picks the base backup a restore to t starts from: the newest
// one consistent before the target.
func ChooseBase(bases []Base, t Target) (Base, error) {
	sort.Slice(bases, func(i, j int) bool { return bases[i].StopTime.Before(bases[j].StopTime) })
	for i := len(bases) - 1; i >= 0; i-- {
		b := bases[i]
		switch {
		case t.Latest,
			t.LSN != 0 && b.Stop <= t.LSN,
			!t.Time.IsZero() && t.LSN == 0 && !b.StopTime.After(t.Time):
			return b, nil
		}
	}
	if len(bases) == 0 {
		return Base{}, fmt.Errorf("%w: there are no physical backups (remora.dev/method: physical)", ErrNoBase)
	}
	return Base{}, fmt.Errorf("%w: the oldest physical backup, %s, is consistent only from %s (LSN %s), after %s", ErrNoBase,
		bases[0].ID, bases[0].StopTime.UTC().Format(time.RFC3339), bases[0].Stop, t)
}

// Recovery is what Recover did.
type Recovery struct {
	Base     Base
	Files    int          // WAL files put in pg_wal
	Last     string       // the last one
	Reach    time.Time    // when the last one was archived
	ReachLSN postgres.LSN // where the last one ends
}

// Recover makes dataDir, which holds base backup b, recover to t when
// PostgreSQL starts on it: it puts the archived WAL from b up to the
// target in pg_wal (each file checked: signature, checksum; a partial
// segment padded to a whole one), and asks for recovery to the target,
// then promotion. It fails, before writing the configuration, when the
// archive cannot reach the target: a gap, or a target past its end.
func Recover(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, ids *repo.Identities, b Base, dataDir string, t Target) (*Recovery, error) {
	a, err := LoadArchive(ctx, st, scope, b.System, b.SegSize, trust, ids)
	if err != nil {
		return nil, err
	}
	wal := filepath.Join(dataDir, "pg_wal")
	for _, tli := range a.Histories(b) {
		if err := a.copyHistory(ctx, st, scope, trust, ids, tli, wal); err != nil {
			return nil, err
		}
	}
	steps, gaps := a.Chain(b)
	rec := &Recovery{Base: b}
	reached, err := a.copySteps(ctx, st, scope, trust, ids, steps, wal, t, rec)
	if err != nil {
		return nil, err
	}
	if !reached {
		return nil, unreachable(t, rec, gaps)
	}
	return rec, writeRecoveryConf(dataDir, t)
}

// copySteps copies the chain's files into pg_wal, up to the one that holds
// an LSN target, or to the end of the archive for a time target, and
// reports whether the target was reached.
//
// A file's archive time bounds the commit times in it from above only
// (the stream may lag the server), so which file holds the first commit
// after a time target is not known without reading its records: a time
// target takes the whole archive, and PostgreSQL stops at the target. The
// archive must go past the target: a file archived after it.
func (a *Archive) copySteps(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, ids *repo.Identities, steps []Step, wal string, t Target, rec *Recovery) (bool, error) {
	for _, s := range steps {
		data, lr, e, err := fetchStep(ctx, st, scope, trust, ids, s.Entry)
		if err != nil {
			return false, err
		}
		end := s.Start + postgres.LSN(len(data))
		if e.Partial {
			data = append(data, make([]byte, int(a.SegSize)-len(data))...)
		}
		if err := writeFile(filepath.Join(wal, e.Name), data); err != nil {
			return false, err
		}
		rec.Files, rec.Last, rec.Reach, rec.ReachLSN = rec.Files+1, e.StoredName, lr.Archived, end
		switch {
		case t.LSN != 0 && end >= t.LSN:
			return true, nil
		}
	}
	return t.Latest || t.LSN == 0 && rec.Reach.After(t.Time), nil
}

// fetchStep reads a file of the chain. A restore may read an archive the
// agent is streaming into: every flush interval the streamer stores the
// segment it receives as a larger partial, or whole, and deletes the
// partial a restore may have listed. A partial that is gone is then read
// from its replacement, which begins at the same byte and holds more; it
// is returned with the entry read.
func fetchStep(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, ids *repo.Identities, e repo.LogEntry) ([]byte, *repo.LogRecord, repo.LogEntry, error) {
	for range 3 {
		data, lr, err := repo.FetchLog(ctx, st, scope, e, trust, ids)
		if err == nil || !e.Partial {
			return data, lr, e, err
		}
		next, ok, lerr := replacement(ctx, st, scope, e)
		if lerr != nil || !ok {
			return nil, nil, e, err
		}
		e = next
	}
	data, lr, err := repo.FetchLog(ctx, st, scope, e, trust, ids)
	return data, lr, e, err
}

// replacement is what the archive holds now in place of partial e: its
// segment whole, else its largest partial that holds more than e.
func replacement(ctx context.Context, st storage.Storage, scope repo.Scope, e repo.LogEntry) (repo.LogEntry, bool, error) {
	logs, err := repo.ListLogs(ctx, st, scope)
	if err != nil {
		return repo.LogEntry{}, false, err
	}
	var best repo.LogEntry
	found := false
	for _, l := range logs {
		if l.System != e.System || l.Series != e.Series || l.Name != e.Name {
			continue
		}
		if !l.Partial {
			return l, true, nil
		}
		if l.PartSize > e.PartSize && (!found || l.PartSize > best.PartSize) {
			best, found = l, true
		}
	}
	return best, found, nil
}

// unreachable explains why the archive cannot take a restore to t.
func unreachable(t Target, rec *Recovery, gaps []Gap) error {
	var why []string
	for _, g := range gaps {
		why = append(why, g.String())
	}
	if len(gaps) > 0 {
		return fmt.Errorf("the WAL archive cannot reach %s from backup %s: %s", t, rec.Base.ID, strings.Join(why, "; "))
	}
	if rec.Files == 0 {
		return fmt.Errorf("the WAL archive holds nothing after backup %s: it cannot reach %s (is remora.dev/pitr on?)", rec.Base.ID, t)
	}
	return fmt.Errorf("the WAL archive ends at %s (LSN %s, %s): it cannot reach %s; choose an earlier time or --to-latest",
		rec.Last, rec.ReachLSN, rec.Reach.UTC().Format(time.RFC3339), t)
}

// copyHistory puts a timeline's history file in pg_wal.
func (a *Archive) copyHistory(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, ids *repo.Identities, tli uint32, wal string) error {
	name := postgres.HistoryName(tli)
	e := repo.LogEntry{System: a.System, Series: postgres.TimelineName(tli), Name: name, StoredName: name}
	data, _, err := repo.FetchLog(ctx, st, scope, e, trust, ids)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(wal, name), data)
}

// writeFile writes a file whole or not at all.
func writeFile(path string, data []byte) error {
	tmp := path + ".remora-tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// writeRecoveryConf asks PostgreSQL for archive recovery to t, then
// promotion. The WAL is in pg_wal already; PostgreSQL still wants a
// restore_command for archive recovery, so it gets one that has nothing
// more to give.
func writeRecoveryConf(dataDir string, t Target) error {
	lines := []string{"", "# Added by remora restore: recover to " + t.String() + ", then promote.",
		"# The WAL it needs was put in pg_wal by the restore.",
		"restore_command = 'false'", "recovery_target_timeline = 'latest'", "recovery_target_action = 'promote'"}
	switch {
	case t.Latest:
	case t.LSN != 0:
		lines = append(lines, "recovery_target_lsn = '"+t.LSN.String()+"'", "recovery_target_inclusive = 'off'")
	default:
		lines = append(lines, "recovery_target_time = '"+t.Time.UTC().Format("2006-01-02 15:04:05.999999-07")+"'", "recovery_target_inclusive = 'on'")
	}
	f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strings.Join(lines, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dataDir, "recovery.signal"), nil)
}
