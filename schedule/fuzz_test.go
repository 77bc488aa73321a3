package schedule

import (
	"testing"
	"time"
)

// FuzzParse: no panic on any spec or seed; an accepted schedule always moves
// forward, at most a little over four years at a time (29 February).
func FuzzParse(f *testing.F) {
	for _, s := range []string{"H H * * *", "30 2 * * *", "@hourly", "@every 6h", "H(0-29)/15 H(1-5) * * 1-5", "H H H * *", "0 0 29 2 *", "@every 1m", "* * * * * *", "H/0 * * * *"} {
		f.Add(s, "shop/db-0")
	}
	f.Fuzz(func(t *testing.T, spec, seed string) {
		s, err := Parse(spec, seed)
		if err != nil {
			return
		}
		at := time.Date(2026, 11, 25, 1, 2, 3, 0, time.UTC)
		for range 5 {
			next := s.Next(at)
			if next.IsZero() {
				return // a schedule with no time left (robfig gives up after five years)
			}
			if !next.After(at) || next.Sub(at) > 4*366*24*time.Hour+time.Hour {
				t.Fatalf("%q (%q): next after %s is %s", spec, s.Expanded(), at, next)
			}
			at = next
		}
	})
}
