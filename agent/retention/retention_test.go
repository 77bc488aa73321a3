package retention

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for s, want := range map[string]Policy{
		"days=7,weeks=4,months=6": {Days: 7, Weeks: 4, Months: 6},
		" days = 6 , months=1":    {Days: 6, Months: 1},
		"last=10":                 {Last: 10},
		"weeks=0,days=2":          {Days: 2},
	} {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "days", "days=x", "days=-1", "years=1", "days=1,days=2", "last=3,days=1", "days=0", "7"} {
		if _, err := Parse(s); err == nil || !strings.Contains(err.Error(), "e.g.") {
			t.Errorf("Parse(%q) = %v, want an error with an example", s, err)
		}
	}
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func kept(p Policy, now time.Time, times ...string) string {
	ts := make([]time.Time, len(times))
	for i, s := range times {
		ts[i] = at(s)
	}
	var out []string
	for i, k := range p.Keep(ts, now) {
		if k {
			out = append(out, times[i][:13])
		}
	}
	return strings.Join(out, " ")
}

func TestKeepTable(t *testing.T) {
	now := at("2026-11-25T12:00:00Z") // a Wednesday
	for _, tc := range []struct {
		p     Policy
		times []string
		want  string
	}{
		// Two a day: the newer of each day, for the last 2 days.
		{Policy{Days: 2}, []string{"2026-11-23T01:00:00Z", "2026-11-23T13:00:00Z", "2026-11-24T01:00:00Z", "2026-11-24T13:00:00Z", "2026-11-25T01:00:00Z"},
			"2026-11-24T13 2026-11-25T01"},
		// ISO weeks start on Monday: Sun 23rd and Mon 24th are in different weeks.
		{Policy{Weeks: 2}, []string{"2026-11-16T10:00:00Z", "2026-11-22T10:00:00Z", "2026-11-23T10:00:00Z", "2026-11-24T10:00:00Z"},
			"2026-11-22T10 2026-11-24T10"},
		{Policy{Months: 3}, []string{"2026-08-31T10:00:00Z", "2026-09-01T10:00:00Z", "2026-09-30T10:00:00Z", "2026-10-15T10:00:00Z", "2026-11-01T10:00:00Z"},
			"2026-09-30T10 2026-10-15T10 2026-11-01T10"},
		{Policy{Last: 2}, []string{"2026-11-20T10:00:00Z", "2026-11-21T10:00:00Z", "2026-11-22T10:00:00Z"},
			"2026-11-21T10 2026-11-22T10"},
		// Backups stopped a month ago: days keep nothing, but the newest stays.
		{Policy{Days: 7}, []string{"2026-10-01T10:00:00Z", "2026-10-02T10:00:00Z"}, "2026-10-02T10"},
		// A backup from the future (clock skew) is not deleted.
		{Policy{Days: 1}, []string{"2026-11-24T10:00:00Z", "2026-11-25T10:00:00Z", "2026-11-26T10:00:00Z"}, "2026-11-25T10 2026-11-26T10"},
	} {
		if got := kept(tc.p, now, tc.times...); got != tc.want {
			t.Errorf("%+v: kept %s, want %s", tc.p, got, tc.want)
		}
	}
}

// TestKeepTwoYears simulates two years of runs, hourly with random failures,
// applying retention after each success, and checks the kept set against the
// policy's definition every day.
func TestKeepTwoYears(t *testing.T) {
	p := Policy{Days: 7, Weeks: 4, Months: 6}
	rng := rand.New(rand.NewPCG(7, 11))
	var stored []time.Time
	start := at("2025-01-01T00:00:00Z")
	for h := 0; h < 2*365*24; h++ {
		now := start.Add(time.Duration(h) * time.Hour)
		if rng.IntN(10) == 0 {
			continue // a failed run: nothing is deleted
		}
		stored = append(stored, now)
		keep := p.Keep(stored, now)
		var next []time.Time
		for i, k := range keep {
			if k {
				next = append(next, stored[i])
			}
		}
		stored = next
		if h%24 != 23 {
			continue
		}
		// Every kept backup is justified, and every day/week/month in range
		// that had a backup keeps its newest.
		if !stored[len(stored)-1].Equal(now) {
			t.Fatalf("%s: the newest backup was deleted", now)
		}
		if len(stored) > 7+4+6+1 {
			t.Fatalf("%s: %d backups kept", now, len(stored))
		}
		for d := 0; d < 7; d++ {
			day := dayNumber(now) - d
			found := false
			for _, s := range stored {
				found = found || dayNumber(s) == day
			}
			if !found && day >= dayNumber(start)+1 {
				t.Fatalf("%s: no backup kept for day -%d", now, d)
			}
		}
	}
}
