package pitr

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/repo"
)

// BinlogSink stores a MySQL or MariaDB server's streamed binary log in
// every destination: it is the mysql.BinlogSink of the agent.
type BinlogSink struct {
	Archive *repo.LogArchive // its Scope and Storages are where
	Log     *slog.Logger
}

var _ mysql.BinlogSink = (*BinlogSink)(nil)

// Resume is where the archive ends in the destination furthest behind: the
// newest file (by when the server opened it) and how far its pieces reach
// without a hole.
func (s *BinlogSink) Resume(ctx context.Context) (mysql.Resume, bool, error) {
	var best mysql.Resume
	for i, st := range s.Archive.Storages {
		b, err := LoadBinlogs(ctx, st, s.Archive.Scope)
		if err != nil {
			return best, false, fmt.Errorf("storage %s: %w", st, err)
		}
		r, ok := b.end()
		if !ok {
			return best, false, nil // a destination with nothing: stream from the start
		}
		if i == 0 || compareResume(r, best) < 0 {
			best = r
		}
	}
	return best, len(s.Archive.Storages) > 0, nil
}

// end is where the newest file's unbroken pieces end.
func (b *Binlogs) end() (mysql.Resume, bool) {
	var newest *binlogFile
	for _, f := range b.files {
		if newest == nil || cmp.Or(cmp.Compare(f.created, newest.created), cmp.Compare(f.number, newest.number)) > 0 {
			newest = f
		}
	}
	if newest == nil {
		return mysql.Resume{}, false
	}
	_, end, last := newest.cover()
	if end == 0 {
		return mysql.Resume{}, false
	}
	return mysql.Resume{System: newest.system, File: newest.name, Created: newest.created, End: end, Last: last}, true
}

func compareResume(a, b mysql.Resume) int {
	return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(fileNumber(a.File), fileNumber(b.File)), cmp.Compare(a.End, b.End), boolCmp(a.Last, b.Last))
}

// Store keeps p in every destination.
func (s *BinlogSink) Store(ctx context.Context, p mysql.Piece) error {
	f := repo.LogFile{System: p.System, Series: BinlogSeries(p.File, p.Created), Name: PieceName(p.Start, p.End, p.Last),
		Start: strconv.FormatUint(p.Start, 10), End: strconv.FormatUint(p.End, 10),
		FirstEvent: p.FirstEvent, LastEvent: p.LastEvent, GTID: p.GTID, Data: p.Data}
	_, err := s.Archive.Store(ctx, f)
	return err
}
