package pitr

import (
	"context"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// PruneWAL removes the archived WAL that no physical backup still kept
// can use: every segment that ends before the start of the oldest one's
// WAL, partials that a whole segment or a larger partial replaced. Only
// backups trust accepts count, so a forged manifest cannot make it delete
// WAL a real backup needs; a cluster with no physical backup at all keeps
// its whole archive. History files are always kept (they are tiny, and
// a restore across timelines needs them). It returns how many files it
// removed.
func PruneWAL(ctx context.Context, st storage.Storage, scope repo.Scope, trust repo.Trust) (int, error) {
	scope.Method = drivers.MethodPhysical
	entries, err := repo.List(ctx, st, scope, trust)
	if err != nil {
		return 0, err
	}
	bases, _ := Bases(entries)
	oldest := map[string]Base{} // by system
	for _, b := range bases {
		if o, ok := oldest[b.System]; !ok || b.Start < o.Start {
			oldest[b.System] = b
		}
	}
	scope.Method = ""
	logs, err := repo.ListLogs(ctx, st, scope)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range unneeded(logs, oldest) {
		if err := repo.DeleteLog(ctx, st, scope, e); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// unneeded picks the files of logs that no base in oldest needs.
func unneeded(logs []repo.LogEntry, oldest map[string]Base) []repo.LogEntry {
	whole := map[string]bool{}    // system/name of whole segments
	largest := map[string]int64{} // system/series/name -> largest partial
	for _, e := range logs {
		k := e.System + "/" + e.Series + "/" + e.Name
		if e.Partial {
			largest[k] = max(largest[k], e.PartSize)
		} else {
			whole[e.System+"/"+e.Name] = true
		}
	}
	var out []repo.LogEntry
	for _, e := range logs {
		b, ok := oldest[e.System]
		if !ok {
			continue
		}
		_, start, isSeg := postgres.ParseSegmentName(e.Name, b.SegSize)
		if !isSeg {
			continue // a history file
		}
		switch {
		case uint64(start)+b.SegSize <= uint64(segStart(b.Start, b.SegSize)):
			out = append(out, e)
		case e.Partial && (whole[e.System+"/"+e.Name] || e.PartSize < largest[e.System+"/"+e.Series+"/"+e.Name]):
			out = append(out, e)
		}
	}
	return out
}
