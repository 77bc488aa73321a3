// Package pitr is point-in-time recovery: the sink that stores what a
// database streams into the log archive (repo/logarchive.go), the chain
// of archived files from a physical base backup onwards, the window a
// restore can reach, and which files a restore to a point needs.
// PostgreSQL's WAL is the one log it knows today.
package pitr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/repo"
)

// Sink stores a PostgreSQL server's streamed WAL in every destination: it
// is the postgres.WALSink of the agent.
type Sink struct {
	Archive *repo.LogArchive // its Scope and Storages are where
	Log     *slog.Logger

	mu       sync.Mutex
	partials map[string][]string // segment's series/name -> its partials' stored names, oldest first
}

var _ postgres.WALSink = (*Sink)(nil)

// Next is where the archive ends in the destination that is furthest
// behind: the first segment of the newest timeline it does not hold.
func (s *Sink) Next(ctx context.Context, system string, segSize uint64) (uint32, postgres.LSN, bool, error) {
	var (
		best  position
		found bool
	)
	for i, st := range s.Archive.Storages {
		entries, err := repo.ListLogs(ctx, st, s.Archive.Scope)
		if err != nil {
			return 0, 0, false, fmt.Errorf("storage %s: %w", st, err)
		}
		p, ok := newestSegment(entries, system, segSize)
		if !ok {
			return 0, 0, false, nil // a destination with nothing: stream from the slot
		}
		if i == 0 || p.less(best) {
			best = p
		}
		found = true
	}
	return best.tli, best.lsn + postgres.LSN(segSize), found, nil
}

// position is a segment's timeline and start.
type position struct {
	tli uint32
	lsn postgres.LSN
}

func (p position) less(q position) bool {
	return p.tli < q.tli || p.tli == q.tli && p.lsn < q.lsn
}

// newestSegment is the newest complete segment of system in entries.
func newestSegment(entries []repo.LogEntry, system string, segSize uint64) (position, bool) {
	var best position
	found := false
	for _, e := range entries {
		if e.System != system || e.Partial {
			continue
		}
		tli, start, ok := postgres.ParseSegmentName(e.Name, segSize)
		if !ok {
			continue // a history file
		}
		if p := (position{tli, start}); !found || best.less(p) {
			best, found = p, true
		}
	}
	return best, found
}

// Store keeps f in every destination. Once a segment is stored whole, or
// a newer partial of it, the older partials of that segment are deleted.
func (s *Sink) Store(ctx context.Context, f postgres.WALFile) error {
	lf := repo.LogFile{System: f.System, Series: postgres.TimelineName(f.Timeline), Name: f.Name, Partial: f.Partial, Data: f.Data}
	if f.End != 0 {
		lf.Start, lf.End = f.Start.String(), f.End.String()
	}
	if _, err := s.Archive.Store(ctx, lf); err != nil {
		return err
	}
	s.dropPartials(ctx, lf)
	return nil
}

// dropPartials deletes the partials of f's segment that f replaces.
func (s *Sink) dropPartials(ctx context.Context, f repo.LogFile) {
	s.mu.Lock()
	if s.partials == nil {
		s.partials = map[string][]string{}
	}
	key := f.System + "/" + f.Series + "/" + f.Name
	old := s.partials[key]
	if f.Partial {
		s.partials[key] = []string{f.StoredName()}
	} else {
		delete(s.partials, key)
	}
	s.mu.Unlock()
	for _, name := range old {
		if name == f.StoredName() {
			continue
		}
		var errs []error
		for _, st := range s.Archive.Storages {
			errs = append(errs, s.Archive.Delete(ctx, st, f.System, f.Series, name))
		}
		if err := errors.Join(errs...); err != nil && s.Log != nil {
			// Left for the archive's retention to remove.
			s.Log.Warn("could not delete a replaced partial WAL segment", "file", name, "error", err)
		}
	}
}
