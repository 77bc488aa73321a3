package schedule

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	from := time.Date(2026, 11, 24, 10, 30, 0, 0, time.UTC)
	for spec, want := range map[string]string{
		"30 2 * * *":   "2026-11-25T02:30:00Z",
		"@hourly":      "2026-11-24T11:00:00Z",
		"@daily":       "2026-11-25T00:00:00Z",
		"@every 6h":    "2026-11-24T16:30:00Z",
		"*/15 * * * *": "2026-11-24T10:45:00Z",
		"0 3 * * 1":    "2026-11-30T03:00:00Z",
	} {
		s, err := Parse(spec, "shop/db-0")
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		if got := s.Next(from).Format(time.RFC3339); got != want {
			t.Errorf("%s: next %s, want %s", spec, got, want)
		}
	}
	for _, spec := range []string{"", "* * * *", "61 * * * *", "H(5-70) * * * *", "H/0 * * * *", "@every 10s", "@sometimes", "H(3 * * * *", "Hx * * * *", "0 0 30 2 *", "0 0 31 4 *"} {
		if _, err := Parse(spec, "x"); err == nil || !strings.Contains(err.Error(), "e.g.") {
			t.Errorf("Parse(%q) = %v, want an error with an example", spec, err)
		}
	}
}

// TestHSpreads: H is stable for one pod and spreads many pods over the day.
func TestHSpreads(t *testing.T) {
	a1, _ := Parse(Default, "shop/db-0")
	a2, _ := Parse(Default, "shop/db-0")
	if a1.Expanded() != a2.Expanded() {
		t.Fatal("H differs for the same pod")
	}
	hours := map[int]int{}
	from := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 100; i++ {
		s, err := Parse(Default, fmt.Sprintf("ns/db-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		hours[s.Next(from).Hour()]++
	}
	if len(hours) < 15 {
		t.Fatalf("100 pods fall in only %d distinct hours: %v", len(hours), hours)
	}
	for h, n := range hours {
		if n > 15 {
			t.Fatalf("%d pods at hour %d", n, h)
		}
	}
	s, err := Parse("H(1-5) H/6 * * *", "x")
	if err != nil {
		t.Fatal(err)
	}
	m := s.Next(from).Minute()
	if m < 1 || m > 5 {
		t.Fatalf("H(1-5) gave minute %d (%s)", m, s.Expanded())
	}
}

// TestMaxInterval: the longest gap between two consecutive runs, which an
// alert allows a backup's age. (A schedule that never runs is refused by
// Parse.)
func TestMaxInterval(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		spec string
		want time.Duration // 0: none
	}{
		{"@every 6h", 6 * time.Hour},
		{"@every 90m", 90 * time.Minute},
		{"@hourly", time.Hour},
		{"*/15 * * * *", 15 * time.Minute},
		{"* * * * *", time.Minute},
		{"30 2 * * *", day},
		{"H H * * *", day},
		{"0 2,20 * * *", 18 * time.Hour},         // 02:00 to 20:00
		{"0 3 * * 1", 7 * day},                   // weekly
		{"0 9-17 * * 1-5", 2*day + 16*time.Hour}, // Friday 17:00 to Monday 09:00
		{"0 0 1 * *", 31 * day},                  // monthly
		{"0 0 31 * *", 61 * day},                 // 31 August to 31 October
		{"0 0 29 2 *", (3*365 + 366) * day},      // leap days
		{"0 0 1 1 *", 366 * day},                 // yearly, across a leap year
		{"0 0 13 * 5", 7 * day},                  // the 13th or any Friday
		{"0 0 29 2 1", 350 * day},                // 29 February or a Monday in February: 22 February to 7 February
	} {
		s, err := Parse(tc.spec, "shop/db-0")
		if err != nil {
			t.Fatalf("%s: %v", tc.spec, err)
		}
		got, ok := s.MaxInterval()
		if !ok {
			got = 0
		}
		if got != tc.want {
			t.Errorf("%s: longest interval %s, want %s", tc.spec, got, tc.want)
		}
	}
}
