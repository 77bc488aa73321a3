package pitr

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// MySQL's and MariaDB's point in time: a dump records its position in the
// binary log; the archive holds the binary log's files in pieces
// (repo/logarchive.go); a restore loads the dump and replays the files from
// the position to the target.

// Piece is one archived piece of a binary log file: bytes [Start, End).
type Piece struct {
	System  string
	File    string // the binary log's name, mysql-bin.000042
	Created uint32 // when the server opened it (Unix seconds)
	Start   uint64
	End     uint64
	Last    bool // the stream moved on to the next file after it
	Entry   repo.LogEntry
}

// Series is the piece's file as the archive names it.
func (p Piece) Series() string { return BinlogSeries(p.File, p.Created) }

// BinlogSeries names a binary log file in the archive.
func BinlogSeries(file string, created uint32) string { return fmt.Sprintf("%s.%08x", file, created) }

// PieceName is a piece's name in its series.
func PieceName(start, end uint64, last bool) string {
	n := fmt.Sprintf("%012x-%012x", start, end)
	if last {
		n += ".last"
	}
	return n
}

// parsePiece reads a listed entry's series and name.
func parsePiece(e repo.LogEntry) (Piece, bool) {
	m := repo.BinlogSeriesRE.FindStringSubmatch(e.Series)
	if m == nil {
		return Piece{}, false
	}
	created, err := strconv.ParseUint(m[2], 16, 32)
	if err != nil {
		return Piece{}, false
	}
	name, last := strings.CutSuffix(e.StoredName, ".last")
	a, b, ok := strings.Cut(name, "-")
	start, err1 := strconv.ParseUint(a, 16, 64)
	end, err2 := strconv.ParseUint(b, 16, 64)
	if !ok || err1 != nil || err2 != nil || end < start {
		return Piece{}, false
	}
	return Piece{System: e.System, File: m[1], Created: uint32(created), Start: start, End: end, Last: last, Entry: e}, true
}

// binlogFile is one archived binary log file and its pieces.
type binlogFile struct {
	system  string
	name    string
	number  uint64
	created uint32
	pieces  []Piece // by start, then longest first
}

// fileNumber is the number a binary log's name ends with.
func fileNumber(name string) uint64 {
	i := strings.LastIndexByte(name, '.')
	n, _ := strconv.ParseUint(name[i+1:], 10, 64)
	return n
}

// Binlogs is a storage's binary log archive of one scope, as listed.
type Binlogs struct {
	files []*binlogFile // by system, then number, then creation
}

// LoadBinlogs lists the binary log archive of scope in st.
func LoadBinlogs(ctx context.Context, st storage.Storage, scope repo.Scope) (*Binlogs, error) {
	entries, err := repo.ListLogs(ctx, st, scope)
	if err != nil {
		return nil, err
	}
	return binlogsOf(entries), nil
}

func binlogsOf(entries []repo.LogEntry) *Binlogs {
	byKey := map[string]*binlogFile{}
	b := &Binlogs{}
	for _, e := range entries {
		p, ok := parsePiece(e)
		if !ok {
			continue
		}
		k := p.System + "/" + p.Series()
		f := byKey[k]
		if f == nil {
			f = &binlogFile{system: p.System, name: p.File, number: fileNumber(p.File), created: p.Created}
			byKey[k] = f
			b.files = append(b.files, f)
		}
		f.pieces = append(f.pieces, p)
	}
	for _, f := range b.files {
		slices.SortFunc(f.pieces, func(x, y Piece) int {
			return cmp.Or(cmp.Compare(x.Start, y.Start), cmp.Compare(y.End, x.End), boolCmp(y.Last, x.Last))
		})
	}
	slices.SortFunc(b.files, func(x, y *binlogFile) int {
		return cmp.Or(strings.Compare(x.system, y.system), cmp.Compare(x.number, y.number), cmp.Compare(x.created, y.created))
	})
	return b
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Empty reports whether the archive holds no piece.
func (b *Binlogs) Empty() bool { return len(b.files) == 0 }

// find is the archived file a dump's position is in: the one of that name
// opened last before the dump ended (a server made anew reuses names).
func (b *Binlogs) find(name string, before time.Time) (int, bool) {
	best := -1
	for i, f := range b.files {
		if f.name != name || int64(f.created) > before.Unix() {
			continue
		}
		if best < 0 || f.created > b.files[best].created {
			best = i
		}
	}
	return best, best >= 0
}

// BinlogStep is a piece a replay reads, from Skip bytes in (pieces may
// overlap where a resumed stream wrote a destination that was ahead).
type BinlogStep struct {
	Piece
	Skip uint64
}

// BinlogGap is binary log missing from the archive: from a file's offset
// to another's.
type BinlogGap struct {
	From, To string // file@offset
}

func (g BinlogGap) String() string {
	return fmt.Sprintf("binary log from %s to %s is missing", g.From, g.To)
}

// BinlogChain is the run of pieces a replay from a position reads: every
// file from the position's one on, each from its first byte (the replay
// tool reads the file's format description there), for as long as the
// archive is unbroken. Gap says where it breaks, when it does before the
// position or before a later file.
type BinlogChain struct {
	Steps []BinlogStep
	Gap   *BinlogGap
}

// From is the chain from a dump's position; ok is false when the archive
// does not hold the position's file.
func (b *Binlogs) From(pos mysql.BinlogPosition, dumped time.Time) (BinlogChain, bool) {
	i, ok := b.find(pos.File, dumped)
	if !ok {
		return BinlogChain{}, false
	}
	var c BinlogChain
	for first := true; ; first = false {
		f := b.files[i]
		steps, end, last := f.cover()
		c.Steps = append(c.Steps, steps...)
		if first && end < pos.Pos {
			c.Gap = &BinlogGap{From: fmt.Sprintf("%s@%d", f.name, end), To: fmt.Sprintf("%s@%d", f.name, pos.Pos)}
			return c, true
		}
		next, later := b.next(f)
		if !last || next < 0 {
			if later >= 0 {
				c.Gap = &BinlogGap{From: fmt.Sprintf("%s@%d", f.name, end), To: b.files[later].name + "@0"}
			}
			return c, true
		}
		i = next
	}
}

// next is the file that follows f on its server (the next number, opened
// at or after it), and the first later file of that server, or -1: a
// server made anew reuses numbers, and its files are no successors.
func (b *Binlogs) next(f *binlogFile) (next, later int) {
	next, later = -1, -1
	for j, g := range b.files {
		if g.system != f.system || g.number <= f.number || g.created < f.created {
			continue
		}
		if g.number == f.number+1 && (next < 0 || g.created < b.files[next].created) {
			next = j
		}
		if later < 0 || g.number < b.files[later].number {
			later = j
		}
	}
	return next, later
}

// cover is the longest unbroken run of f's pieces from its first byte, the
// offset it reaches, and whether it reaches the file's end.
func (f *binlogFile) cover() ([]BinlogStep, uint64, bool) {
	var steps []BinlogStep
	var at uint64
	for {
		best, found := Piece{}, false
		for _, p := range f.pieces {
			if p.Start > at || p.End < at {
				continue
			}
			if !found || p.End > best.End || p.End == best.End && p.Last && !best.Last {
				best, found = p, true
			}
		}
		switch {
		case !found:
			return steps, at, false
		case best.End == at:
			// Nothing new; a piece that ends here marked last says the
			// file ends here.
			return steps, at, best.Last
		}
		steps = append(steps, BinlogStep{Piece: best, Skip: at - best.Start})
		at = best.End
		if best.Last {
			return steps, at, true
		}
	}
}
