// Package retention decides which backups to keep: grandfather-father-son
// (the newest backup of each of the last N calendar days, ISO weeks and
// months, in UTC) or the newest N. The newest backup is always kept.
//
// A policy marked proven counts only the backups shown good after they were
// written (verified, or restored by a drill): see KeepProven.
package retention

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Policy is a retention rule. A zero field keeps nothing by that rule.
type Policy struct {
	Days, Weeks, Months int
	Last                int
	// Proven: only proven backups count for the rules above (KeepProven).
	Proven bool
}

// Default is the policy when none is given.
var Default = Policy{Days: 7, Weeks: 4, Months: 6}

const example = "e.g. days=7,weeks=4,months=6 or last=10, with ,proven to count only verified or drilled backups"

// ProvenOption is the word that marks a policy proven.
const ProvenOption = "proven"

// Parse reads "days=6,weeks=4,months=6" (any of the three) or "last=N",
// either followed by ",proven" to count only proven backups.
func Parse(s string) (Policy, error) {
	var p Policy
	if strings.TrimSpace(s) == "" {
		return p, fmt.Errorf("retention is empty (%s)", example)
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == ProvenOption {
			if p.Proven {
				return Policy{}, fmt.Errorf("retention %q: %s given twice (%s)", s, ProvenOption, example)
			}
			p.Proven = true
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if !ok || err != nil || n < 0 || n > 100000 {
			return Policy{}, fmt.Errorf("retention %q: %q is not name=count (%s)", s, part, example)
		}
		k = strings.TrimSpace(k)
		if seen[k] {
			return Policy{}, fmt.Errorf("retention %q: %s given twice (%s)", s, k, example)
		}
		seen[k] = true
		switch k {
		case "days":
			p.Days = n
		case "weeks":
			p.Weeks = n
		case "months":
			p.Months = n
		case "last":
			p.Last = n
		default:
			return Policy{}, fmt.Errorf("retention %q: unknown %q: want days, weeks, months or last (%s)", s, k, example)
		}
	}
	if p.Last > 0 && (p.Days > 0 || p.Weeks > 0 || p.Months > 0) {
		return Policy{}, fmt.Errorf("retention %q: last=N does not mix with days, weeks or months (%s)", s, example)
	}
	if p.Days+p.Weeks+p.Months+p.Last == 0 {
		return Policy{}, fmt.Errorf("retention %q keeps nothing but the newest backup; say so with last=1 (%s)", s, example)
	}
	return p, nil
}

// None is what ParseOrNone reads as "keep everything".
const None = "none"

// ParseOrNone reads a policy as Parse does, or "none" (or nothing) for no
// policy: every backup is kept.
func ParseOrNone(s string) (*Policy, error) {
	if s = strings.TrimSpace(s); s == "" || s == None {
		return nil, nil
	}
	p, err := Parse(s)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

func (p Policy) String() string {
	s := fmt.Sprintf("days=%d,weeks=%d,months=%d", p.Days, p.Weeks, p.Months)
	if p.Last > 0 {
		s = fmt.Sprintf("last=%d", p.Last)
	}
	if p.Proven {
		s += "," + ProvenOption
	}
	return s
}

// KeepProven returns, for backups taken at the given times of which those
// marked in proven were verified or drilled, which to keep at now. A policy
// that is not Proven ignores the marks: it is Keep. A Proven one:
//
//   - applies its rules to the proven backups alone, as Keep does: the
//     newest proven backup is always kept, and an unproven backup fills no
//     day, week, month or last-N slot;
//   - keeps every unproven backup taken at or after the newest proven one:
//     it may yet be proven, and deleting it would leave only older ones;
//   - keeps everything while no backup is proven: nothing has shown which
//     backups are good, so none is deleted;
//   - keeps a backup newer than now (clock skew), as Keep does.
//
// An unproven backup older than the newest proven one is deleted: a proven
// backup has replaced it.
func (p Policy) KeepProven(times []time.Time, proven []bool, now time.Time) []bool {
	if !p.Proven {
		return p.Keep(times, now)
	}
	keep := make([]bool, len(times))
	var idx []int // of the proven backups
	var newest time.Time
	for i, t := range times {
		if proven[i] {
			idx = append(idx, i)
			if len(idx) == 1 || t.After(newest) {
				newest = t
			}
		}
	}
	sub := make([]time.Time, len(idx))
	for j, i := range idx {
		sub[j] = times[i]
	}
	for j, k := range p.Keep(sub, now) {
		keep[idx[j]] = k
	}
	for i, t := range times {
		if !proven[i] && (len(idx) == 0 || !t.Before(newest) || t.After(now.UTC())) {
			keep[i] = true
		}
	}
	return keep
}

// Keep returns, for backups taken at the given times, which to keep at now.
// A backup newer than now (clock skew) is kept. The newest is always kept.
func (p Policy) Keep(times []time.Time, now time.Time) []bool {
	keep := make([]bool, len(times))
	if len(times) == 0 {
		return keep
	}
	order := make([]int, len(times)) // newest first
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return times[b].Compare(times[a]) })
	keep[order[0]] = true
	now = now.UTC()
	for _, i := range order {
		if times[i].After(now) {
			keep[i] = true
		}
	}
	if p.Last > 0 {
		for _, i := range order[:min(p.Last, len(order))] {
			keep[i] = true
		}
		return keep
	}
	// For each rule, walk the newest first and keep the first backup seen in
	// each bucket, for the newest N buckets counted back from now.
	rule := func(n int, bucket func(time.Time) int) {
		if n <= 0 {
			return
		}
		nowBucket := bucket(now)
		seen := map[int]bool{}
		for _, i := range order {
			b := bucket(times[i].UTC())
			if b > nowBucket || b <= nowBucket-n || seen[b] {
				continue
			}
			seen[b] = true
			keep[i] = true
		}
	}
	rule(p.Days, dayNumber)
	rule(p.Weeks, weekNumber)
	rule(p.Months, func(t time.Time) int { return t.Year()*12 + int(t.Month()) - 1 })
	return keep
}

// dayNumber counts calendar days since the epoch, in UTC.
func dayNumber(t time.Time) int {
	return int(t.Unix() / 86400)
}

// weekNumber counts ISO weeks (Monday to Sunday): the Monday's day number / 7.
func weekNumber(t time.Time) int {
	d := dayNumber(t)
	// 1970-01-01 was a Thursday: shift so that weeks start on Monday.
	return (d + 3) / 7
}
