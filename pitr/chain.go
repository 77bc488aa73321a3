package pitr

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// Base is what point-in-time recovery needs of a physical base backup.
type Base struct {
	ID       string
	System   string // the cluster's system identifier
	Timeline uint32
	Start    postgres.LSN // the backup's WAL begins here
	Stop     postgres.LSN // and is consistent from here
	StopTime time.Time    // the server's time at Stop
	SegSize  uint64
}

// Archive is a storage's WAL archive of one cluster, as listed: which
// files are there, and the timeline histories (read and checked).
type Archive struct {
	System  string
	SegSize uint64
	full    map[uint32]map[postgres.LSN]repo.LogEntry // by timeline and segment start
	partial map[uint32]map[postgres.LSN]repo.LogEntry // the largest partial of each segment
	history map[uint32][]postgres.HistoryEntry
	files   int
}

// LoadArchive lists the archive of system in a storage and reads its
// timeline histories.
func LoadArchive(ctx context.Context, st storage.Storage, scope repo.Scope, system string, segSize uint64, trust repo.Trust, ids *repo.Identities) (*Archive, error) {
	entries, err := repo.ListLogs(ctx, st, scope)
	if err != nil {
		return nil, err
	}
	a := &Archive{System: system, SegSize: segSize, full: map[uint32]map[postgres.LSN]repo.LogEntry{},
		partial: map[uint32]map[postgres.LSN]repo.LogEntry{}, history: map[uint32][]postgres.HistoryEntry{}}
	for _, e := range entries {
		if e.System != system {
			continue
		}
		a.files++
		if tli, ok := historyTimeline(e.Name); ok {
			b, _, err := repo.FetchLog(ctx, st, scope, e, trust, ids)
			if err != nil {
				return nil, err
			}
			if a.history[tli], err = postgres.ParseHistory(b); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name, err)
			}
			continue
		}
		tli, start, ok := postgres.ParseSegmentName(e.Name, segSize)
		if !ok {
			continue
		}
		m := a.full
		if e.Partial {
			m = a.partial
			if old, dup := m[tli][start]; dup && old.PartSize >= e.PartSize {
				continue
			}
		}
		if m[tli] == nil {
			m[tli] = map[postgres.LSN]repo.LogEntry{}
		}
		m[tli][start] = e
	}
	return a, nil
}

// historyTimeline reads a history file's name.
func historyTimeline(name string) (uint32, bool) {
	if len(name) != len("00000002.history") || name[8:] != ".history" {
		return 0, false
	}
	n, err := strconv.ParseUint(name[:8], 16, 32)
	return uint32(n), err == nil
}

// leg is a stretch of one timeline on the way from a base backup to the
// newest timeline that descends from it: WAL from from to to (exclusive;
// zero: the timeline goes on).
type leg struct {
	tli      uint32
	from, to postgres.LSN
}

// path is the legs from base b to the newest timeline of the archive that
// branched off b's after b became consistent.
func (a *Archive) path(b Base) []leg {
	target := b.Timeline
	for tli, h := range a.history {
		if tli > target && descends(h, b) {
			target = tli
		}
	}
	var legs []leg
	from := b.Start
	for _, e := range a.history[target] {
		if e.TLI < b.Timeline {
			continue
		}
		legs = append(legs, leg{tli: e.TLI, from: from, to: e.End})
		from = e.End
	}
	return append(legs, leg{tli: target, from: from})
}

// descends reports whether a timeline with history h branched off b's
// timeline, or one of its successors, after b's consistency point.
func descends(h []postgres.HistoryEntry, b Base) bool {
	for _, e := range h {
		if e.TLI == b.Timeline {
			return e.End >= b.Stop
		}
	}
	return false
}

// Step is one file a restore reads, in order.
type Step struct {
	Entry    repo.LogEntry
	Timeline uint32
	Start    postgres.LSN
}

// Gap is WAL missing from the archive on a base backup's way forward.
type Gap struct {
	Timeline uint32
	From, To postgres.LSN // missing from From to To (exclusive)
}

func (g Gap) String() string {
	return fmt.Sprintf("timeline %d: WAL from %s to %s is missing", g.Timeline, g.From, g.To)
}

// Chain is the files from base b onwards, in replay order, as far as the
// archive holds them without a gap, ending with the newest partial when
// it follows the last whole segment; and the gaps that stop it, or lie
// beyond it.
func (a *Archive) Chain(b Base) (steps []Step, gaps []Gap) {
	seg := postgres.LSN(a.SegSize)
	broken := false
	for _, l := range a.path(b) {
		// A closed leg's segments end before the one that holds its end,
		// which the next timeline has whole; an open one's at the newest.
		end := segStart(l.to, a.SegSize)
		if l.to == 0 {
			end = a.newestFull(l.tli) + seg
		}
		for s := segStart(l.from, a.SegSize); s < end; s += seg {
			e, ok := a.full[l.tli][s]
			if !ok {
				if len(gaps) == 0 || gaps[len(gaps)-1].To != s {
					gaps = append(gaps, Gap{Timeline: l.tli, From: s, To: s + seg})
				} else {
					gaps[len(gaps)-1].To = s + seg
				}
				broken = true
				continue
			}
			if !broken {
				steps = append(steps, Step{Entry: e, Timeline: l.tli, Start: s})
			}
		}
		if l.to == 0 && !broken {
			if p, ok := a.partial[l.tli][end]; ok && end >= segStart(l.from, a.SegSize) {
				steps = append(steps, Step{Entry: p, Timeline: l.tli, Start: end})
			}
		}
	}
	return steps, gaps
}

// newestFull is the start of the newest whole segment of timeline tli,
// or one segment before zero when it has none.
func (a *Archive) newestFull(tli uint32) postgres.LSN {
	newest := postgres.LSN(0)
	found := false
	for s := range a.full[tli] {
		if !found || s > newest {
			newest, found = s, true
		}
	}
	if !found {
		return 0 - postgres.LSN(a.SegSize)
	}
	return newest
}

func segStart(l postgres.LSN, segSize uint64) postgres.LSN {
	return postgres.LSN(uint64(l) / segSize * segSize)
}

// Histories are the history files a restore from b needs: those of the
// timelines on its way, in order.
func (a *Archive) Histories(b Base) []uint32 {
	var out []uint32
	for _, l := range a.path(b) {
		if l.tli != b.Timeline && !contains(out, l.tli) {
			out = append(out, l.tli)
		}
	}
	return out
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Window is the span a storage's archive and base backups can restore to.
type Window struct {
	From, To time.Time      // zero From: nothing restorable
	Gaps     []fmt.Stringer // on the way from the newest backup
}

// Reach is the window of bases (with this archive): from the oldest base
// whose chain reaches the newest file without a gap, to that file's time.
func (a *Archive) Reach(bases []Base) Window {
	sort.Slice(bases, func(i, j int) bool { return bases[i].StopTime.Before(bases[j].StopTime) })
	var w Window
	for i, b := range bases {
		if b.System != a.System {
			continue
		}
		steps, gaps := a.Chain(b)
		if i == len(bases)-1 {
			for _, g := range gaps {
				w.Gaps = append(w.Gaps, g)
			}
		}
		if len(gaps) > 0 || len(steps) == 0 {
			continue
		}
		end := steps[len(steps)-1].Entry.Stored
		if w.From.IsZero() {
			w.From = b.StopTime
		}
		if end.After(w.To) {
			w.To = end
		}
	}
	return w
}

// ErrNoBase is returned when no base backup can start a restore to the
// target.
var ErrNoBase = errors.New("no physical base backup to start from")

// ChainReport is what VerifyChain found.
type ChainReport struct {
	Files int       // archived files checked on the way from the base
	Last  string    // the last of them
	Until time.Time // when it was archived
}

// VerifyChain checks the archived WAL after base b: every file on the way
// from it to the newest one is there without a gap, and each matches its
// record (signature, size, SHA-256, decompression). A base whose cluster
// has no archive (WAL streaming never on) has nothing to check. Gaps and
// damage wrap repo.ErrCorrupt and name the WAL missing or the file.
func VerifyChain(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, ids *repo.Identities, b Base) (*ChainReport, error) {
	for attempt := 1; ; attempt++ {
		rep, err := verifyChainOnce(ctx, st, scope, trust, ids, b)
		if attempt == 3 || !errors.Is(err, fs.ErrNotExist) {
			return rep, err
		}
		// A partial the agent replaced while it was read: read again.
	}
}

func verifyChainOnce(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust, ids *repo.Identities, b Base) (*ChainReport, error) {
	a, err := LoadArchive(ctx, st, scope, b.System, b.SegSize, trust, ids)
	if err != nil {
		return nil, err
	}
	rep := &ChainReport{}
	if a.files == 0 {
		return rep, nil
	}
	steps, gaps := a.Chain(b)
	for _, s := range steps {
		_, rec, err := repo.FetchLog(ctx, st, scope, s.Entry, trust, ids)
		if err != nil {
			return rep, err
		}
		rep.Files, rep.Last, rep.Until = rep.Files+1, s.Entry.StoredName, rec.Archived
	}
	if len(gaps) > 0 {
		var why []string
		for _, g := range gaps {
			why = append(why, g.String())
		}
		return rep, fmt.Errorf("%w: WAL gap after backup %s: %s; point-in-time restores cannot cross it", repo.ErrCorrupt, b.ID, strings.Join(why, "; "))
	}
	return rep, nil
}
