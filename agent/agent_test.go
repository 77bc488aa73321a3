package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters map[chan time.Time]time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t, waiters: map[chan time.Time]time.Time{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters[ch] = c.now.Add(d)
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.waiters, ch)
	}
}

// next waits until someone waits on the clock, and returns when for.
func (c *fakeClock) next(t *testing.T) time.Time {
	t.Helper()
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		var first time.Time
		for _, at := range c.waiters {
			if first.IsZero() || at.Before(first) {
				first = at
			}
		}
		c.mu.Unlock()
		if !first.IsZero() {
			return first
		}
	}
	t.Fatal("nobody waits on the clock")
	return time.Time{}
}

// advance moves the clock to at and fires what is due.
func (c *fakeClock) advance(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at
	for ch, when := range c.waiters {
		if !when.After(at) {
			ch <- at
			delete(c.waiters, ch)
		}
	}
}

func newTestAgent(t *testing.T, clock Clock, annotations string) *Agent {
	t.Helper()
	file := filepath.Join(t.TempDir(), "annotations")
	os.WriteFile(file, []byte(annotations), 0o644)
	a, err := New(Config{Namespace: "shop", Workload: "db-0", Driver: "postgres", Storage: []string{"file://" + t.TempDir()},
		AnnotationsFile: file, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestScheduleMonths runs four months of an hourly and a daily schedule in
// milliseconds: every run happens at its time, once.
func TestScheduleMonths(t *testing.T) {
	for _, tc := range []struct {
		annotations string
		runs        int
		step        time.Duration
	}{
		{`remora.dev/schedule="@hourly"` + "\n", 24 * 120, time.Hour},
		{"", 120, 24 * time.Hour}, // the default, H H * * *
	} {
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		clock := newFakeClock(start)
		a := newTestAgent(t, clock, tc.annotations)
		var mu sync.Mutex
		var at []time.Time
		a.backupFn = func(ctx context.Context, r *run) error {
			mu.Lock()
			at = append(at, clock.Now())
			mu.Unlock()
			return nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.scheduleLoop(ctx, ctx); close(done) }()
		for i := 0; i < tc.runs; i++ {
			when := clock.next(t)
			for a.running() != nil { // the previous run has ended
				time.Sleep(100 * time.Microsecond)
			}
			clock.advance(when)
		}
		clock.next(t) // the loop took the last time and waits for the next
		for a.running() != nil {
			time.Sleep(100 * time.Microsecond)
		}
		cancel()
		<-done
		mu.Lock()
		if len(at) != tc.runs {
			t.Fatalf("%q: %d runs, want %d", tc.annotations, len(at), tc.runs)
		}
		for i := 1; i < len(at); i++ {
			if at[i].Sub(at[i-1]) != tc.step {
				t.Fatalf("%q: runs %d and %d are %s apart", tc.annotations, i-1, i, at[i].Sub(at[i-1]))
			}
		}
		mu.Unlock()
	}
}

// TestOverlappingRunIsSkipped: a scheduled time that comes while a backup
// still runs is skipped and counted; there are never two at once.
func TestOverlappingRunIsSkipped(t *testing.T) {
	clock := newFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := newTestAgent(t, clock, `remora.dev/schedule="@hourly"`+"\n")
	release := make(chan struct{})
	var mu sync.Mutex
	active, most, calls := 0, 0, 0
	a.backupFn = func(ctx context.Context, r *run) error {
		mu.Lock()
		active++
		calls++
		most = max(most, active)
		mu.Unlock()
		<-release
		mu.Lock()
		active--
		mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.scheduleLoop(ctx, ctx)
	for i := 0; i < 3; i++ { // three hours pass while the first run hangs
		// next waits for the loop to arm its timer: it has handled the
		// previous time (started or skipped a run) by then.
		clock.advance(clock.next(t))
	}
	clock.next(t)
	if _, started := a.trigger(ctx, triggerRequest); started {
		t.Fatal("a second backup started while one runs")
	}
	close(release)
	for a.running() != nil {
		time.Sleep(time.Millisecond)
	}
	st := a.Status()
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 || most != 1 || st.SkippedRuns != 2 {
		t.Fatalf("calls %d, most at once %d, skipped %d", calls, most, st.SkippedRuns)
	}
}

// TestReloadKeepsLastGood: a bad annotation keeps the last good schedule.
func TestReloadKeepsLastGood(t *testing.T) {
	a := newTestAgent(t, newFakeClock(time.Now()), `remora.dev/schedule="@hourly"`+"\n")
	os.WriteFile(a.cfg.AnnotationsFile, []byte(`remora.dev/schedule="whenever"`+"\n"), 0o644)
	a.reload()
	if st := a.Status(); st.Schedule != "@hourly" || st.ConfigError == "" {
		t.Fatalf("%+v", st)
	}
	os.WriteFile(a.cfg.AnnotationsFile, []byte(`remora.dev/schedule="@daily"`+"\n"), 0o644)
	a.reload()
	if st := a.Status(); st.Schedule != "@daily" || st.ConfigError != "" {
		t.Fatalf("%+v", st)
	}
}

// The schedule's longest interval is a metric, so an alert can tell a
// backup older than the schedule allows; it follows the annotation.
func TestScheduleIntervalMetric(t *testing.T) {
	a := newTestAgent(t, newFakeClock(time.Now()), `remora.dev/schedule="0 9-17 * * 1-5"`+"\n")
	interval := func() string {
		n, err := testutil.GatherAndCount(a.metrics.reg, MetricScheduleInterval)
		if err != nil || n != 1 {
			return fmt.Sprintf("%d series (%v)", n, err)
		}
		return fmt.Sprint(testutil.ToFloat64(a.metrics.scheduleInterval))
	}
	if got, want := interval(), fmt.Sprint((64 * time.Hour).Seconds()); got != want {
		t.Fatalf("interval %s, want %s", got, want)
	}
	for _, tc := range []struct{ annotations, want string }{
		{`remora.dev/schedule="@every 6h"`, "21600"},
		{`remora.dev/schedule="whenever"`, "21600"},   // invalid: the last good schedule stays
		{`remora.dev/schedule="0 0 30 2 *"`, "21600"}, // never runs: refused like any invalid one
		{``, "86400"}, // the default, daily
	} {
		os.WriteFile(a.cfg.AnnotationsFile, []byte(tc.annotations+"\n"), 0o644)
		a.reload()
		if got := interval(); got != tc.want {
			t.Errorf("%s: interval %s, want %s", tc.annotations, got, tc.want)
		}
	}
}

// The start of the newest failed run is a metric: newer than the last
// success, the last run failed. A run that is not this pod's to do (another
// member backs up) changes neither.
func TestLastFailureMetric(t *testing.T) {
	clock := newFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := newTestAgent(t, clock, `remora.dev/schedule="@hourly"`+"\n")
	var outcome func(r *run) error
	a.backupFn = func(ctx context.Context, r *run) error { return outcome(r) }
	for _, tc := range []struct {
		name                string
		outcome             func(r *run) error
		wantFailure, wantOK float64 // hours after the start
	}{
		{"failed", func(*run) error { return errors.New("connection refused") }, 1, 0},
		{"not this member's", func(r *run) error { r.result.Skipped = "not the primary"; return nil }, 1, 0},
		{"succeeded", func(*run) error { return nil }, 1, 3},
		{"failed again", func(*run) error { return errors.New("disk full") }, 4, 3},
	} {
		clock.advance(clock.Now().Add(time.Hour))
		outcome = tc.outcome
		r, _ := a.trigger(context.Background(), triggerRequest)
		<-r.done
		at := func(hours float64) float64 { // 0: never
			if hours == 0 {
				return 0
			}
			return float64(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()) + 3600*hours
		}
		failure, ok := testutil.ToFloat64(a.metrics.lastFailure), testutil.ToFloat64(a.metrics.lastSuccess)
		if failure != at(tc.wantFailure) || ok != at(tc.wantOK) {
			t.Errorf("%s: last failure %v, last success %v; want %v and %v", tc.name, failure, ok, at(tc.wantFailure), at(tc.wantOK))
		}
	}
}

// A run that fails in the same second as the success before it still reads
// as the last run failed: the timestamps keep their fractions of a second.
func TestLastFailureWithinTheSecond(t *testing.T) {
	clock := newFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 200e6, time.UTC))
	a := newTestAgent(t, clock, `remora.dev/schedule="@hourly"`+"\n")
	for _, fail := range []bool{false, true} {
		a.backupFn = func(ctx context.Context, r *run) error {
			if fail {
				return errors.New("connection refused")
			}
			return nil
		}
		r, _ := a.trigger(context.Background(), triggerRequest)
		<-r.done
		clock.advance(clock.Now().Add(500 * time.Millisecond))
	}
	failure, ok := testutil.ToFloat64(a.metrics.lastFailure), testutil.ToFloat64(a.metrics.lastSuccess)
	if !(failure > ok) {
		t.Errorf("last failure %f, last success %f: the failure is not the newer", failure, ok)
	}
}
