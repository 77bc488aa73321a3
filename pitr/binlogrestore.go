package pitr

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/drivers/mysql/binlog"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// Dump is a logical MySQL or MariaDB backup whose databases recorded their
// binary log positions: each database's dump is its own consistent
// snapshot, so each replays from its own position.
type Dump struct {
	ID string
	// Finished is when the snapshots had all been taken: the server's clock
	// (that of the binary log's timestamps, which a target time is read
	// in) when the dump recorded it, else the agent's at the backup's end.
	Finished  time.Time
	Positions map[string]mysql.BinlogPosition
}

// Earliest is the first of the positions of dbs (every database when dbs
// is empty).
func (d Dump) Earliest(dbs ...string) mysql.BinlogPosition {
	var first mysql.BinlogPosition
	for db, p := range d.Positions {
		if len(dbs) > 0 && !slices.Contains(dbs, db) {
			continue
		}
		if first.File == "" || comparePos(p, first) < 0 {
			first = p
		}
	}
	return first
}

func comparePos(a, b mysql.BinlogPosition) int {
	return cmp.Or(cmp.Compare(fileNumber(a.File), fileNumber(b.File)), cmp.Compare(a.Pos, b.Pos))
}

// Dumps are the usable backups of entries that recorded a position for
// every database, oldest first.
func Dumps(entries []repo.Entry) []Dump {
	var out []Dump
	for _, e := range entries {
		m := e.Manifest
		if e.Problem != "" || m.Driver != mysql.Name || e.Verification != nil && !e.Verification.OK {
			continue
		}
		d := Dump{ID: m.ID, Positions: map[string]mysql.BinlogPosition{}}
		complete, serverTime := true, true
		for _, o := range m.Objects {
			if o.Kind != drivers.KindDatabase {
				continue
			}
			p, ok, err := mysql.PositionOf(o.Meta)
			if !ok || err != nil {
				complete = false
				break
			}
			d.Positions[o.Database] = p
			serverTime = serverTime && !p.Time.IsZero()
			if p.Time.After(d.Finished) {
				d.Finished = p.Time
			}
		}
		if !serverTime {
			d.Finished = m.Finished
		}
		if complete && len(d.Positions) > 0 {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b Dump) int { return a.Finished.Compare(b.Finished) })
	return out
}

// ErrNoDump is returned when no backup can start a restore to the target.
var ErrNoDump = errors.New("no backup with a binary log position to start from")

// ChooseDump is the newest dump finished at or before t (any time when t
// is zero) that holds database (any, when empty).
func ChooseDump(dumps []Dump, t time.Time, database string) (Dump, error) {
	for i := len(dumps) - 1; i >= 0; i-- {
		d := dumps[i]
		if _, ok := d.Positions[database]; database != "" && !ok {
			continue
		}
		if t.IsZero() || !d.Finished.After(t) {
			return d, nil
		}
	}
	if len(dumps) == 0 {
		return Dump{}, fmt.Errorf("%w: no backup recorded its binary log position (binary logging off when they were taken, or taken by an older Remora)", ErrNoDump)
	}
	return Dump{}, fmt.Errorf("%w: the oldest usable backup, %s, finished at %s, after the target", ErrNoDump, dumps[0].ID, dumps[0].Finished.UTC().Format(time.RFC3339))
}

// Local is a binary log file fetched for a replay.
type Local struct {
	Name string // the server's name for it
	Path string
}

// Fetched is what FetchBinlogs wrote.
type Fetched struct {
	Files   []Local
	Pieces  int
	Reached time.Time // the newest event timestamp the files hold
	GTID    string    // the last transaction's GTID they hold
}

// ErrUnreachable is returned when the archive ends before the target.
var ErrUnreachable = errors.New("the archive does not reach the target")

// FetchBinlogs writes to dir the archived binary log files a replay from
// pos needs to reach until (the whole archive when until is zero): every
// piece checked against its record, and every file's events against their
// checksums, before it returns. dumped is when the dump ended.
func FetchBinlogs(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, ids *repo.Identities, pos mysql.BinlogPosition, dumped, until time.Time, dir string) (*Fetched, error) {
	b, err := LoadBinlogs(ctx, st, scope)
	if err != nil {
		return nil, err
	}
	chain, ok := b.From(pos, dumped)
	if !ok {
		return nil, fmt.Errorf("%w: the archive does not hold binary log %s, where the backup's position is (was remora.dev/pitr on then?)", ErrUnreachable, pos.File)
	}
	if chain.Gap != nil && (len(chain.Steps) == 0 || until.IsZero()) {
		return nil, fmt.Errorf("%w: %s; restore to a time before it with --to-time", ErrUnreachable, chain.Gap)
	}
	out := &Fetched{}
	var cur *os.File
	defer func() {
		if cur != nil {
			cur.Close()
		}
	}()
	for _, s := range chain.Steps {
		if cur == nil || out.Files[len(out.Files)-1].Name != s.File {
			if cur, err = nextLocal(cur, dir, s.File, out); err != nil {
				return nil, err
			}
		}
		rec, err := fetchStep(ctx, st, scope, trust, ids, s, cur)
		if err != nil {
			return nil, err
		}
		out.Pieces++
		if rec.LastEvent.After(out.Reached) {
			out.Reached = rec.LastEvent
		}
		if rec.GTID != "" {
			out.GTID = rec.GTID
		}
		if !until.IsZero() && !rec.LastEvent.Before(until) {
			break // the replay stops in this piece
		}
	}
	if err := closeLocal(cur, out); err != nil {
		return nil, err
	}
	cur = nil
	return out, reached(out, until, chain.Gap)
}

// reached checks that the fetched files reach until.
func reached(f *Fetched, until time.Time, gap *BinlogGap) error {
	if until.IsZero() || !f.Reached.Before(until) {
		return nil
	}
	why := "the newest archived event is from " + f.Reached.UTC().Format(time.RFC3339)
	if gap != nil {
		why += ", before a gap: " + gap.String()
	}
	return fmt.Errorf("%w %s: %s (restore to a time up to then, or with --to-latest)", ErrUnreachable, until.UTC().Format(time.RFC3339), why)
}

// nextLocal closes (and checks) the file being written and opens the next.
func nextLocal(cur *os.File, dir, name string, f *Fetched) (*os.File, error) {
	if err := closeLocal(cur, f); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	nf, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	f.Files = append(f.Files, Local{Name: name, Path: path})
	return nf, nil
}

// closeLocal closes a fetched file and checks its events: magic, every
// event where the one before ended, and their CRC32 checksums.
func closeLocal(cur *os.File, f *Fetched) error {
	if cur == nil {
		return nil
	}
	if err := cur.Close(); err != nil {
		return err
	}
	return checkLocal(f.Files[len(f.Files)-1])
}

func checkLocal(l Local) error {
	r, err := os.Open(l.Path)
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := binlog.VerifyFile(r); err != nil {
		return fmt.Errorf("%w: archived binary log %s: %v", repo.ErrCorrupt, l.Name, err)
	}
	return nil
}

// fetchStep fetches a piece and writes the bytes of it the chain needs.
func fetchStep(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, ids *repo.Identities, s BinlogStep, w io.Writer) (*repo.LogRecord, error) {
	data, rec, err := repo.FetchLog(ctx, st, scope, s.Entry, trust, ids)
	if err != nil {
		return nil, err
	}
	if uint64(len(data)) != s.End-s.Start {
		return nil, fmt.Errorf("%w: archived binary log piece %s/%s holds %d bytes, its name says %d", repo.ErrCorrupt, s.Series(), s.Entry.StoredName, len(data), s.End-s.Start)
	}
	if _, err := w.Write(data[s.Skip:]); err != nil {
		return nil, err
	}
	return rec, nil
}

// BinlogReach is the window the dumps and the archive can restore to: from
// the oldest dump whose chain has no gap to the newest event it reaches;
// the newest dump's gap, if it has one.
func BinlogReach(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, dumps []Dump) (Window, error) {
	var w Window
	b, err := LoadBinlogs(ctx, st, scope)
	if err != nil || b.Empty() {
		return w, err
	}
	ends := map[string]time.Time{}
	for i, d := range dumps {
		chain, ok := b.From(d.Earliest(), d.Finished)
		if i == len(dumps)-1 && chain.Gap != nil {
			w.Gaps = append(w.Gaps, chain.Gap)
		}
		if !ok || chain.Gap != nil || len(chain.Steps) == 0 {
			continue
		}
		last := chain.Steps[len(chain.Steps)-1]
		k := last.Series() + "/" + last.Entry.StoredName
		end, seen := ends[k]
		if !seen {
			rec, err := repo.LogRecordOf(ctx, st, scope, last.Entry, trust)
			if err != nil {
				return w, err
			}
			end, ends[k] = rec.LastEvent, rec.LastEvent
		}
		if w.From.IsZero() {
			w.From = d.Finished
		}
		if end.After(w.To) {
			w.To = end
		}
	}
	return w, nil
}

// VerifyBinlogs checks the archived binary log after dump d: every piece
// from its earliest position on is there without a gap up to the newest,
// matches its record, and its files' events match their checksums.
func VerifyBinlogs(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, ids *repo.Identities, d Dump) (*ChainReport, error) {
	rep := &ChainReport{}
	b, err := LoadBinlogs(ctx, st, scope)
	if err != nil || b.Empty() {
		return rep, err
	}
	chain, ok := b.From(d.Earliest(), d.Finished)
	if !ok {
		return rep, nil // streaming was not on when d was taken
	}
	dir, err := os.MkdirTemp("", "remora-verify-binlog-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	for i, s := range chain.Steps {
		// One file at a time on disk: a file is checked once whole.
		f, err := openAppend(dir, s)
		if err != nil {
			return rep, err
		}
		rec, err := fetchStep(ctx, st, scope, trust, ids, s, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return rep, err
		}
		rep.Files, rep.Last, rep.Until = rep.Files+1, s.Series()+"/"+s.Entry.StoredName, rec.LastEvent
		if s.Last || i == len(chain.Steps)-1 || chain.Steps[i+1].File != s.File {
			if err := checkAndDrop(dir, s.File); err != nil {
				return rep, err
			}
		}
	}
	if chain.Gap != nil {
		return rep, fmt.Errorf("%w: binary log gap after backup %s: %s; point-in-time restores cannot cross it", repo.ErrCorrupt, d.ID, chain.Gap)
	}
	return rep, nil
}

func openAppend(dir string, s BinlogStep) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, s.File), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
}

func checkAndDrop(dir, name string) error {
	l := Local{Name: name, Path: filepath.Join(dir, name)}
	err := checkLocal(l)
	os.Remove(l.Path)
	return err
}

// PruneBinlogs removes the archived binary log files that no backup still
// kept can use: those the server opened before the file of the oldest kept
// backup's earliest position (an older server's too, one made anew since). Only backups
// trust accepts count; with no backup that has a position, the archive is
// kept whole. It returns how many pieces it removed.
func PruneBinlogs(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust) (int, error) {
	scope.Method = ""
	entries, err := repo.List(ctx, st, scope, trust)
	if err != nil {
		return 0, err
	}
	dumps := Dumps(entries)
	if len(dumps) == 0 {
		return 0, nil
	}
	b, err := LoadBinlogs(ctx, st, scope)
	if err != nil {
		return 0, err
	}
	oldest := dumps[0]
	i, ok := b.find(oldest.Earliest().File, oldest.Finished)
	if !ok {
		return 0, nil
	}
	keep := b.files[i]
	n := 0
	for _, f := range b.files {
		// Files are opened in order: one opened before the kept one is
		// older on any server.
		older := f.created < keep.created || f.created == keep.created && f.system == keep.system && f.number < keep.number
		if !older {
			continue
		}
		for _, p := range f.pieces {
			if err := repo.DeleteLog(ctx, st, scope, p.Entry); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// Reachable is the window a point-in-time restore of scope's backups can
// reach in st: MySQL's dumps with the binary log, or PostgreSQL's
// physical backups with the WAL. has is false when no backup can start
// one (no physical backup, no dump that recorded a position).
func Reachable(ctx context.Context, st storage.Storage, scope repo.Scope, entries []repo.Entry, trust repo.Trust) (w Window, has bool, err error) {
	scope.Method = ""
	if dumps := Dumps(entries); len(dumps) > 0 {
		scope.Driver = mysql.Name
		w, err = BinlogReach(ctx, st, scope, trust, dumps)
		return w, true, err
	}
	bases, _ := Bases(entries)
	if len(bases) == 0 {
		return w, false, nil
	}
	newest := bases[0]
	for _, b := range bases {
		if b.StopTime.After(newest.StopTime) {
			newest = b
		}
	}
	a, err := LoadArchive(ctx, st, scope, newest.System, newest.SegSize, trust, nil)
	if err != nil {
		return w, true, err
	}
	return a.Reach(bases), true, nil
}
