package retention

import (
	"math/rand/v2"
	"os"
	"strconv"
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
		"days=7,proven":           {Days: 7, Proven: true},
		"proven, last=3":          {Last: 3, Proven: true},
	} {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "days", "days=x", "days=-1", "years=1", "days=1,days=2", "last=3,days=1", "days=0", "7", "proven", "days=1,proven,proven", "days=1,proven=1", "days=1,Proven"} {
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

// oracle is the GFS definition written plainly with calendar arithmetic:
// the newest backup of each of the last N days, ISO weeks and months counted
// back from now, plus the newest of all.
func oracle(p Policy, all []time.Time, now time.Time) map[time.Time]bool {
	keep := map[time.Time]bool{}
	newestIn := func(from, to time.Time) {
		var best time.Time
		for _, b := range all {
			if !b.Before(from) && b.Before(to) && b.After(best) {
				best = b
			}
		}
		if !best.IsZero() {
			keep[best] = true
		}
	}
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	for d := 0; d < p.Days; d++ {
		newestIn(today.AddDate(0, 0, -d), today.AddDate(0, 0, -d+1))
	}
	monday := today.AddDate(0, 0, -((int(today.Weekday()) + 6) % 7))
	for w := 0; w < p.Weeks; w++ {
		newestIn(monday.AddDate(0, 0, -7*w), monday.AddDate(0, 0, -7*w+7))
	}
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	for m := 0; m < p.Months; m++ {
		newestIn(month.AddDate(0, -m, 0), month.AddDate(0, -m+1, 0))
	}
	newestIn(time.Time{}, now.Add(time.Nanosecond))
	return keep
}

// TestKeepTwoYears simulates two years of daily and of hourly runs with
// failures mixed in, pruning after each success as the agent does. After
// every run the kept set equals the GFS definition applied to every backup
// ever taken, and the newest good backup is kept.
func TestKeepTwoYears(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every time.Duration
		p     Policy
	}{
		{"daily", 24 * time.Hour, Policy{Days: 7, Weeks: 4, Months: 6}},
		{"hourly", time.Hour, Policy{Days: 7, Weeks: 4, Months: 6}},
		{"hourly, days only", time.Hour, Policy{Days: 3}},
		{"daily, months only", 24 * time.Hour, Policy{Months: 12}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 11))
			start := at("2025-01-01T00:30:00Z")
			var stored, all []time.Time
			for now := start; now.Before(start.AddDate(2, 0, 0)); now = now.Add(tc.every) {
				if rng.IntN(5) == 0 {
					continue // a failed run: it deletes nothing
				}
				stored = append(stored, now)
				all = append(all, now)
				// Older backups are in no bucket any more; the oracle need
				// not look at them.
				horizon := now.AddDate(0, -tc.p.Months-1, -7*tc.p.Weeks-tc.p.Days-1)
				for len(all) > 1 && all[0].Before(horizon) {
					all = all[1:]
				}
				var next []time.Time
				for i, k := range tc.p.Keep(stored, now) {
					if k {
						next = append(next, stored[i])
					}
				}
				stored = next
				if !stored[len(stored)-1].Equal(now) {
					t.Fatalf("%s: the newest backup was deleted", now)
				}
				if now.Hour() != 0 && tc.every < 24*time.Hour {
					continue // the definition is checked once a day
				}
				want := oracle(tc.p, all, now)
				if len(stored) != len(want) {
					t.Fatalf("%s: kept %d, the definition keeps %d", now, len(stored), len(want))
				}
				for _, s := range stored {
					if !want[s] {
						t.Fatalf("%s: kept %s, which the definition does not", now, s)
					}
				}
			}
		})
	}
}

// TestKeepRandomPolicies: random policies, random gaps between runs (ten
// minutes to three days) and random failure rates over two simulated years,
// pruning after each success. The newest backup always survives, and the kept
// set is exactly what the definition keeps of every backup ever taken, so no
// backup the policy covers is ever deleted. REMORA_FAULT_SEED changes the
// draw (make soak); the default is fixed.
func TestKeepRandomPolicies(t *testing.T) {
	seed := uint64(1)
	if s := os.Getenv("REMORA_FAULT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	checks := 0
	for i := range 40 {
		var p Policy
		if rng.IntN(4) == 0 {
			p.Last = 1 + rng.IntN(20)
		} else {
			for p.Days+p.Weeks+p.Months == 0 {
				p = Policy{Days: rng.IntN(15), Weeks: rng.IntN(9), Months: rng.IntN(25)}
			}
		}
		q, err := Parse(p.String())
		if err != nil || q != p {
			t.Fatalf("policy %+v does not round-trip: %q %+v %v", p, p.String(), q, err)
		}
		failRate := rng.Float64() * 0.5
		maxGap := time.Duration(10+rng.IntN(3*24*60-10)) * time.Minute
		start := at("2025-01-01T00:00:00Z").Add(time.Duration(rng.IntN(24*60)) * time.Minute)
		var stored, all []time.Time
		lastDay := time.Time{}
		for now := start; now.Before(start.AddDate(2, 0, 0)); now = now.Add(time.Minute + time.Duration(rng.Int64N(int64(maxGap)))) {
			if rng.Float64() < failRate {
				continue
			}
			stored = append(stored, now)
			all = append(all, now)
			var next []time.Time
			for i, k := range p.Keep(stored, now) {
				if k {
					next = append(next, stored[i])
				}
			}
			stored = next
			if !stored[len(stored)-1].Equal(now) {
				t.Fatalf("policy %s, %s: the newest backup was deleted", p, now)
			}
			if day := now.Truncate(24 * time.Hour); day.Equal(lastDay) {
				continue // the definition is checked once a simulated day
			} else {
				lastDay = day
			}
			var want map[time.Time]bool
			if p.Last > 0 {
				want = map[time.Time]bool{}
				for _, b := range all[max(0, len(all)-p.Last):] {
					want[b] = true
				}
			} else {
				horizon := now.AddDate(0, -p.Months-1, -7*p.Weeks-p.Days-1)
				for len(all) > 1 && all[0].Before(horizon) {
					all = all[1:]
				}
				want = oracle(p, all, now)
			}
			checks++
			if len(stored) != len(want) {
				t.Fatalf("policy %s (case %d), %s: kept %d, the definition keeps %d", p, i, now, len(stored), len(want))
			}
			for _, s := range stored {
				if !want[s] {
					t.Fatalf("policy %s (case %d), %s: kept %s, which the definition does not", p, i, now, s)
				}
			}
		}
	}
	t.Logf("seed %d: 40 random policies, %d checks against the definition", seed, checks)
}

// keptProven is kept for a proven policy: times marked with a trailing "!"
// are proven.
func keptProven(p Policy, now time.Time, times ...string) string {
	ts := make([]time.Time, len(times))
	proven := make([]bool, len(times))
	for i, s := range times {
		s, proven[i] = strings.CutSuffix(s, "!")
		ts[i] = at(s)
	}
	var out []string
	for i, k := range p.KeepProven(ts, proven, now) {
		if k {
			out = append(out, times[i][:13])
		}
	}
	return strings.Join(out, " ")
}

func TestKeepProvenTable(t *testing.T) {
	now := at("2026-11-25T12:00:00Z")
	for _, tc := range []struct {
		name  string
		p     Policy
		times []string
		want  string
	}{
		{"not proven: the marks are ignored", Policy{Days: 2},
			[]string{"2026-11-23T10:00:00Z!", "2026-11-24T10:00:00Z", "2026-11-25T10:00:00Z"}, "2026-11-24T10 2026-11-25T10"},
		{"an unproven backup fills no day; the newer unproven ones wait", Policy{Days: 2, Proven: true},
			[]string{"2026-11-22T10:00:00Z!", "2026-11-23T10:00:00Z", "2026-11-24T10:00:00Z!", "2026-11-24T20:00:00Z", "2026-11-25T10:00:00Z"},
			"2026-11-24T10 2026-11-24T20 2026-11-25T10"},
		{"the newest proven outlives its days", Policy{Days: 2, Proven: true},
			[]string{"2026-10-01T10:00:00Z!", "2026-10-02T10:00:00Z!", "2026-11-24T10:00:00Z", "2026-11-25T10:00:00Z"},
			"2026-10-02T10 2026-11-24T10 2026-11-25T10"},
		{"nothing proven: nothing deleted", Policy{Last: 1, Proven: true},
			[]string{"2026-11-23T10:00:00Z", "2026-11-24T10:00:00Z"}, "2026-11-23T10 2026-11-24T10"},
		{"last counts proven ones only", Policy{Last: 2, Proven: true},
			[]string{"2026-11-20T10:00:00Z!", "2026-11-21T10:00:00Z!", "2026-11-22T10:00:00Z", "2026-11-23T10:00:00Z!", "2026-11-24T10:00:00Z"},
			"2026-11-21T10 2026-11-23T10 2026-11-24T10"},
		{"a future unproven backup is kept", Policy{Last: 1, Proven: true},
			[]string{"2026-11-24T10:00:00Z!", "2026-11-26T10:00:00Z", "2026-11-23T10:00:00Z"}, "2026-11-24T10 2026-11-26T10"},
	} {
		if got := keptProven(tc.p, now, tc.times...); got != tc.want {
			t.Errorf("%s: %s kept %s, want %s", tc.name, tc.p, got, tc.want)
		}
	}
}

// provenOracle is KeepProven's definition written plainly: the plain
// definition (oracle, or the newest N) applied to the proven backups, and
// every unproven backup not older than the newest proven one (all of them
// while none is proven).
func provenOracle(p Policy, all []time.Time, proven map[time.Time]bool, now time.Time) map[time.Time]bool {
	var ok []time.Time
	for _, b := range all {
		if proven[b] {
			ok = append(ok, b)
		}
	}
	keep := map[time.Time]bool{}
	if p.Last > 0 {
		for _, b := range ok[max(0, len(ok)-p.Last):] {
			keep[b] = true
		}
	} else if len(ok) > 0 {
		keep = oracle(p, ok, now)
	}
	for _, b := range all {
		if !proven[b] && (len(ok) == 0 || !b.Before(ok[len(ok)-1])) {
			keep[b] = true
		}
	}
	return keep
}

// TestKeepProvenRandomPolicies: random proven policies over two simulated
// years of runs at random gaps with random failures, while a verify or a
// drill proves now the newest stored backup, now one picked at random, at
// random rates (some backups never). Retention runs after each successful
// backup. After each, the newest proven backup is kept, and so is every
// backup not older than it; once a day the kept set is exactly what the
// definition keeps of every backup ever taken, marked proven if it was
// proven while it was stored. REMORA_FAULT_SEED changes the draw.
func TestKeepProvenRandomPolicies(t *testing.T) {
	seed := uint64(1)
	if s := os.Getenv("REMORA_FAULT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 1818))
	checks := 0
	for i := range 40 {
		p := Policy{Proven: true}
		if rng.IntN(4) == 0 {
			p.Last = 1 + rng.IntN(20)
		} else {
			for p.Days+p.Weeks+p.Months == 0 {
				p = Policy{Days: rng.IntN(15), Weeks: rng.IntN(9), Months: rng.IntN(25), Proven: true}
			}
		}
		if q, err := Parse(p.String()); err != nil || q != p {
			t.Fatalf("policy %+v does not round-trip: %q %+v %v", p, p.String(), q, err)
		}
		checks += simulateProven(t, rng, p, i)
	}
	t.Logf("seed %d: 40 random proven policies, %d checks against the definition", seed, checks)
}

// simulateProven runs one policy of TestKeepProvenRandomPolicies.
func simulateProven(t *testing.T, rng *rand.Rand, p Policy, i int) int {
	failRate := rng.Float64() * 0.5
	proveRate := 0.05 + rng.Float64()*0.9
	newestOnly := rng.IntN(2) == 0 // verify --latest after backups, or drills of any
	maxGap := time.Duration(10+rng.IntN(3*24*60-10)) * time.Minute
	start := at("2025-01-01T00:00:00Z").Add(time.Duration(rng.IntN(24*60)) * time.Minute)
	var stored, all []time.Time
	proven := map[time.Time]bool{}
	lastDay, checks := time.Time{}, 0
	for now := start; now.Before(start.AddDate(2, 0, 0)); now = now.Add(time.Minute + time.Duration(rng.Int64N(int64(maxGap)))) {
		if len(stored) > 0 && rng.Float64() < proveRate {
			b := stored[len(stored)-1]
			if !newestOnly {
				b = stored[rng.IntN(len(stored))]
			}
			proven[b] = true
		}
		if rng.Float64() < failRate {
			continue
		}
		stored, all = append(stored, now), append(all, now)
		marks := make([]bool, len(stored))
		for j, b := range stored {
			marks[j] = proven[b]
		}
		var next []time.Time
		for j, k := range p.KeepProven(stored, marks, now) {
			if k {
				next = append(next, stored[j])
			}
		}
		stored = next
		checkProvenFloor(t, p, now, stored, all, proven)
		if day := now.Truncate(24 * time.Hour); day.Equal(lastDay) {
			continue
		} else {
			lastDay = day
		}
		all = trimProven(p, all, proven, now)
		want := provenOracle(p, all, proven, now)
		checks++
		if len(stored) != len(want) {
			t.Fatalf("policy %s (case %d), %s: kept %d, the definition keeps %d", p, i, now, len(stored), len(want))
		}
		for _, s := range stored {
			if !want[s] {
				t.Fatalf("policy %s (case %d), %s: kept %s, which the definition does not", p, i, now, s)
			}
		}
	}
	return checks
}

// checkProvenFloor: what a proven policy never deletes is still stored —
// the newest proven backup, and every backup not older than it.
func checkProvenFloor(t *testing.T, p Policy, now time.Time, stored, all []time.Time, proven map[time.Time]bool) {
	t.Helper()
	has := map[time.Time]bool{}
	for _, s := range stored {
		has[s] = true
	}
	// all is oldest first: walk back to the newest proven one.
	for j := len(all) - 1; j >= 0; j-- {
		if !has[all[j]] {
			t.Fatalf("policy %s, %s: deleted %s, not older than the newest proven backup", p, now, all[j])
		}
		if proven[all[j]] {
			return
		}
	}
}

// trimProven drops from the record of every backup taken those the
// definition can no longer keep, to bound the oracle's work: older than any
// bucket, with a proven backup after them.
func trimProven(p Policy, all []time.Time, proven map[time.Time]bool, now time.Time) []time.Time {
	if p.Last > 0 {
		return all
	}
	horizon := now.AddDate(0, -p.Months-1, -7*p.Weeks-p.Days-1)
	provenAfter := make([]bool, len(all)+1)
	for j := len(all) - 1; j >= 0; j-- {
		provenAfter[j] = provenAfter[j+1] || proven[all[j]]
	}
	n := 0
	for n < len(all) && all[n].Before(horizon) && provenAfter[n+1] {
		n++
	}
	return all[n:]
}
