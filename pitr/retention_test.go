package pitr

import (
	"slices"
	"testing"
	"time"

	"remora.dev/remora/repo"
)

// TestUnneeded: WAL retention removes what ends before the oldest kept
// base backup's start and partials a larger one or a whole segment
// replaced; never history files, never another cluster's archive, and
// never the segment the base starts in.
func TestUnneeded(t *testing.T) {
	seg := func(system, name string) repo.LogEntry {
		return repo.LogEntry{System: system, Series: name[:8], Name: name, StoredName: name, Stored: time.Now()}
	}
	partial := func(system, name string, size int64) repo.LogEntry {
		e := seg(system, name)
		e.Partial, e.PartSize = true, size
		e.StoredName = name + ".partial.x"
		return e
	}
	logs := []repo.LogEntry{
		seg("1", "000000010000000000000001"),          // before the base: removed
		seg("1", "000000010000000000000002"),          // before the base: removed
		seg("1", "000000010000000000000003"),          // the base starts in it: kept
		seg("1", "000000010000000000000004"),          // kept
		partial("1", "000000010000000000000004", 100), // a whole one replaced it: removed
		partial("1", "000000010000000000000005", 100), // a larger one replaced it: removed
		partial("1", "000000010000000000000005", 200), // kept
		seg("1", "00000002.history"),                  // kept
		seg("1", "000000020000000000000002"),          // another timeline, before the base: removed
		seg("9", "000000010000000000000001"),          // another cluster, no base: kept
	}
	base := Base{System: "1", Timeline: 1, Start: 3*segSize + 40, SegSize: segSize}
	var got []string
	for _, e := range unneeded(logs, map[string]Base{"1": base}) {
		got = append(got, e.System+"/"+e.Name+map[bool]string{true: "(partial)"}[e.Partial])
	}
	want := []string{"1/000000010000000000000001", "1/000000010000000000000002", "1/000000010000000000000004(partial)",
		"1/000000010000000000000005(partial)", "1/000000020000000000000002"}
	if !slices.Equal(got, want) {
		t.Errorf("removed %v\nwant    %v", got, want)
	}
	if len(unneeded(logs, nil)) != 0 {
		t.Error("without any base backup, something was removed")
	}
}
