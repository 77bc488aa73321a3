// Package schedule reads backup schedules: five-field cron lines, the
// @hourly/@daily/@weekly/@monthly/@yearly shorthands and @every <duration>,
// all in UTC, plus Jenkins' H: in a field, H stands for one value chosen by a
// hash of the pod's identity, so a hundred pods with "H H * * *" spread their
// backups over the day, each always at the same time.
package schedule

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Default is the schedule when none is given: daily, at a time spread by H.
const Default = "H H * * *"

// Schedule says when backups run.
type Schedule struct {
	spec     string // as given
	expanded string // with H replaced
	s        cron.Schedule
}

// fields are the ranges of the five cron fields. H in the day of month stays
// within 1-28 so that it runs in every month.
var fields = []struct {
	name     string
	min, max int
}{{"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 28}, {"month", 1, 12}, {"day of week", 0, 6}}

const example = `e.g. "H H * * *", "30 2 * * *", "@hourly" or "@every 6h"`

// ParseError is why a schedule was refused.
type ParseError struct {
	Spec   string
	Reason string // what is wrong, with an example of what is right
}

func (e *ParseError) Error() string { return fmt.Sprintf("schedule %q: %s", e.Spec, e.Reason) }

// Parse reads spec; seed (namespace/workload) chooses the values of H. Its
// errors are a *ParseError.
func Parse(spec, seed string) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	bad := func(why string) (Schedule, error) {
		return Schedule{}, &ParseError{Spec: spec, Reason: fmt.Sprintf("%s (%s)", why, example)}
	}
	if spec == "" {
		return bad("empty")
	}
	expanded := spec
	if !strings.HasPrefix(spec, "@") {
		parts := strings.Fields(spec)
		if len(parts) != 5 {
			return bad(fmt.Sprintf("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(parts)))
		}
		for i, p := range parts {
			e, err := expandH(p, i, seed)
			if err != nil {
				return bad(fmt.Sprintf("%s field %q: %v", fields[i].name, p, err))
			}
			parts[i] = e
		}
		expanded = strings.Join(parts, " ")
	} else if d, ok := strings.CutPrefix(spec, "@every "); ok {
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil || dur < time.Minute {
			return bad("@every takes a duration of at least 1m, such as 30m or 6h")
		}
	}
	s, err := cron.ParseStandard(expanded)
	if err != nil {
		return bad(err.Error())
	}
	sch := Schedule{spec: spec, expanded: expanded, s: s}
	if sch.Next(cycleStart).IsZero() {
		// The agent would otherwise wait for a zero time: run at once,
		// again and again.
		return bad("it never runs: no day matches (such as 30 February)")
	}
	return sch, nil
}

// expandH replaces H, H(a-b), H/n and H(a-b)/n in one field.
func expandH(field string, i int, seed string) (string, error) {
	var out []string
	for _, item := range strings.Split(field, ",") {
		if !strings.HasPrefix(item, "H") {
			out = append(out, item)
			continue
		}
		lo, hi := fields[i].min, fields[i].max
		rest := item[1:]
		if strings.HasPrefix(rest, "(") {
			end := strings.Index(rest, ")")
			if end < 0 {
				return "", fmt.Errorf("unclosed H(")
			}
			a, b, ok := strings.Cut(rest[1:end], "-")
			x, err1 := strconv.Atoi(a)
			y, err2 := strconv.Atoi(b)
			if !ok || err1 != nil || err2 != nil || x < fields[i].min || y > fields[i].max || x > y {
				return "", fmt.Errorf("H(%s): want H(a-b) within %d-%d", rest[1:end], fields[i].min, fields[i].max)
			}
			lo, hi, rest = x, y, rest[end+1:]
		}
		h := hash(seed, i)
		switch {
		case rest == "":
			out = append(out, strconv.Itoa(lo+int(h%uint64(hi-lo+1))))
		case strings.HasPrefix(rest, "/"):
			step, err := strconv.Atoi(rest[1:])
			if err != nil || step < 1 || step > hi-lo+1 {
				return "", fmt.Errorf("H/%s: want a step from 1 to %d", rest[1:], hi-lo+1)
			}
			out = append(out, fmt.Sprintf("%d-%d/%d", lo+int(h%uint64(step)), hi, step))
		default:
			return "", fmt.Errorf("cannot read %q", item)
		}
	}
	return strings.Join(out, ","), nil
}

func hash(seed string, field int) uint64 {
	f := fnv.New64a()
	fmt.Fprintf(f, "%s\x00%d", seed, field)
	return f.Sum64()
}

// Next is the first run strictly after t, in UTC.
func (s Schedule) Next(t time.Time) time.Time { return s.s.Next(t.UTC()) }

// String is the schedule as given.
func (s Schedule) String() string { return s.spec }

// Expanded is the schedule with H replaced by this pod's values.
func (s Schedule) Expanded() string { return s.expanded }

// The Gregorian calendar repeats its days of the week and leap years every
// 28 years from 1901 to 2099, and so does a cron schedule's pattern of runs:
// its gaps over 28 years from cycleStart are all the gaps it has.
var cycleStart = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

const cycleYears = 28

// MaxInterval is the longest time between two consecutive runs: how old the
// newest backup may be while the schedule is kept. False when the schedule
// runs less than once in 5 years (as far as Next looks ahead) or never.
//
// A cron schedule runs at the same times of day on each day it matches (in
// UTC there are no clock changes), so the gaps are those between the times of
// one day and those from the last time of a matching day to the first of the
// next: one Next per matching day, not per run.
func (s Schedule) MaxInterval() (time.Duration, bool) {
	const day = 24 * time.Hour
	if d, ok := s.s.(cron.ConstantDelaySchedule); ok {
		return d.Delay, true
	}
	if s.s == nil {
		return 0, false
	}
	first := s.Next(cycleStart.Add(-time.Second))
	if first.IsZero() {
		return 0, false
	}
	today := first.Truncate(day)
	firstOfDay, lastOfDay := first.Sub(today), first.Sub(today)
	var longest time.Duration
	for t := first; ; {
		n := s.Next(t)
		if n.IsZero() {
			return 0, false
		}
		if n.Truncate(day) != today {
			break
		}
		longest, lastOfDay, t = max(longest, n.Sub(t)), n.Sub(today), n
	}
	for end := cycleStart.AddDate(cycleYears, 0, 0); today.Before(end); {
		n := s.Next(today.Add(day - time.Second))
		if n.IsZero() {
			return 0, false
		}
		next := n.Truncate(day)
		longest = max(longest, next.Sub(today)-lastOfDay+firstOfDay)
		today = next
	}
	return longest, true
}
