package postgres

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// WAL file names, as PostgreSQL makes them: a segment is named by its
// timeline and its number, TTTTTTTTXXXXXXXXYYYYYYYY (8 hex digits each),
// where XXXXXXXX*segmentsPerID+YYYYYYYY is the number and segmentsPerID is
// 2^32 / wal_segment_size; a timeline's history file is TTTTTTTT.history.

// LSN is a position in the WAL.
type LSN = pglogrepl.LSN

// ParseLSN reads an LSN as PostgreSQL prints it (16/B374D848).
func ParseLSN(s string) (LSN, error) { return pglogrepl.ParseLSN(s) }

// SegmentName is the file name of the segment that holds lsn.
func SegmentName(tli uint32, lsn LSN, segSize uint64) string {
	segno := uint64(lsn) / segSize
	perID := 0x100000000 / segSize
	return fmt.Sprintf("%08X%08X%08X", tli, segno/perID, segno%perID)
}

var segmentRE = regexp.MustCompile(`^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$`)

// ParseSegmentName reads a segment's file name: its timeline and the LSN
// of its first byte.
func ParseSegmentName(name string, segSize uint64) (tli uint32, start LSN, ok bool) {
	m := segmentRE.FindStringSubmatch(name)
	if m == nil || segSize == 0 {
		return 0, 0, false
	}
	t, _ := strconv.ParseUint(m[1], 16, 32)
	hi, _ := strconv.ParseUint(m[2], 16, 32)
	lo, _ := strconv.ParseUint(m[3], 16, 32)
	perID := 0x100000000 / segSize
	if lo >= perID {
		return 0, 0, false
	}
	return uint32(t), LSN((hi*perID + lo) * segSize), true
}

// HistoryName is the file name of a timeline's history file.
func HistoryName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// TimelineName is a timeline as the archive names its series.
func TimelineName(tli uint32) string { return fmt.Sprintf("%08X", tli) }

// segmentStart is the LSN of the first byte of lsn's segment.
func segmentStart(lsn LSN, segSize uint64) LSN { return LSN(uint64(lsn) / segSize * segSize) }

// ValidSegmentSize reports whether n is a wal_segment_size PostgreSQL
// allows: a power of two from 1 MiB to 1 GiB.
func ValidSegmentSize(n uint64) bool {
	return n >= 1<<20 && n <= 1<<30 && n&(n-1) == 0
}

// HistoryEntry is one line of a timeline history file: timeline TLI ended
// (its successor branched off) at End.
type HistoryEntry struct {
	TLI uint32
	End LSN
}

var historyLineRE = regexp.MustCompile(`^\s*(\d+)\s+([0-9A-Fa-f]+/[0-9A-Fa-f]+)`)

// ParseHistory reads a timeline history file: the ancestors of its
// timeline, oldest first, each with the LSN where it ended. Comment and
// blank lines are skipped; a line that is neither is an error.
func ParseHistory(b []byte) ([]HistoryEntry, error) {
	var out []HistoryEntry
	for i, line := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(line); t == "" || t[0] == '#' {
			continue
		}
		m := historyLineRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("timeline history line %d is not \"TLI LSN reason\": %q", i+1, line)
		}
		tli, err := strconv.ParseUint(m[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %v", i+1, err)
		}
		end, err := pglogrepl.ParseLSN(m[2])
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %v", i+1, err)
		}
		if len(out) > 0 && (uint32(tli) <= out[len(out)-1].TLI || end < out[len(out)-1].End) {
			return nil, fmt.Errorf("timeline history line %d goes backwards", i+1)
		}
		out = append(out, HistoryEntry{TLI: uint32(tli), End: end})
	}
	return out, nil
}
