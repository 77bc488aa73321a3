package retention

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzPolicy: any spec parses or fails without a panic; an accepted policy
// prints as a spec that parses to the same policy, and applied to any set of
// backup times it always keeps the newest and every one in the future; with
// every other backup marked proven, KeepProven keeps the newest proven one and
// every backup not older than it.
func FuzzPolicy(f *testing.F) {
	for _, s := range []string{"days=7,weeks=4,months=6", "last=10", "days=1", "months=120", "weeks=0", "days=7,last=3", "days=-1", "days=2,proven", "proven,last=1", "days=99999999999999999999"} {
		f.Add(s, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	}
	f.Fuzz(func(t *testing.T, spec string, raw []byte) {
		p, err := Parse(spec)
		if err != nil {
			return
		}
		q, err := Parse(p.String())
		if err != nil || q != p {
			t.Fatalf("%q → %+v prints as %q → %+v, %v", spec, p, p.String(), q, err)
		}
		now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		var times []time.Time
		newest := -1
		for i := 0; i+4 <= len(raw) && len(times) < 200; i += 4 {
			// up to ~3 years back and a little ahead
			off := time.Duration(binary.LittleEndian.Uint32(raw[i:])%(3*366*24*60)) * time.Minute
			ts := now.Add(-off + 24*time.Hour)
			times = append(times, ts)
			if newest < 0 || ts.After(times[newest]) {
				newest = len(times) - 1
			}
		}
		keep := p.Keep(times, now)
		if len(keep) != len(times) {
			t.Fatalf("Keep returned %d decisions for %d backups", len(keep), len(times))
		}
		for i, ts := range times {
			if (i == newest || ts.After(now)) && !keep[i] {
				t.Fatalf("%s deleted %s (newest %s, now %s)", p, ts, times[newest], now)
			}
		}
		checkKeepProven(t, p, times, now)
	})
}

func checkKeepProven(t *testing.T, p Policy, times []time.Time, now time.Time) {
	proven := make([]bool, len(times))
	var newestProven time.Time
	for i := range times {
		proven[i] = i%2 == 1
		if proven[i] && times[i].After(newestProven) {
			newestProven = times[i]
		}
	}
	keep := p.KeepProven(times, proven, now)
	keptNewest := newestProven.IsZero()
	for i, ts := range times {
		if p.Proven && !proven[i] && !ts.Before(newestProven) && !keep[i] {
			t.Fatalf("%s deleted unproven %s, not older than the newest proven %s", p, ts, newestProven)
		}
		// Of proven backups taken at the same second, one is the newest.
		keptNewest = keptNewest || proven[i] && keep[i] && ts.Equal(newestProven)
	}
	if p.Proven && !keptNewest {
		t.Fatalf("%s deleted the newest proven backup %s", p, newestProven)
	}
}
