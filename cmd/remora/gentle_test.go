package main

import (
	"strings"
	"testing"

	"remora.dev/remora/internal/prio"
)

// TestGentleFlags: --priority and --max-rate take what the annotations
// take, and a bad value is refused naming the flag.
func TestGentleFlags(t *testing.T) {
	for _, c := range []struct {
		priority, maxRate string
		p                 prio.Priority
		rate              int64
		err               string
	}{
		{"", "", "", 0, ""},
		{"idle", "50Mi", prio.Idle, 50 << 20, ""},
		{"normal", "200M", prio.Normal, 200e6, ""},
		{"high", "", "", 0, "--priority"},
		{"low", "100K", "", 0, "--max-rate"},
		{"low", "50MB", "", 0, "--max-rate"},
	} {
		g := gentle{priority: c.priority, maxRate: c.maxRate}
		p, rate, err := g.parse()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: err %v, want one naming %s", g, err, c.err)
			}
			continue
		}
		if err != nil || p != c.p || rate != c.rate {
			t.Errorf("%+v: %q, %d, %v; want %q, %d", g, p, rate, err, c.p, c.rate)
		}
	}
}
