// Package fleet surveys a storage: for every namespace, workload, driver and
// method it holds, the newest backup, whether it was verified and drilled,
// what is damaged, and the point-in-time window. It reads the storage
// alone, so it answers without access to any cluster.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/pitr"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// Proof states of a backup: whether verify (or a drill) ran on it, and
// with what result.
const (
	StateNo     = "no"
	StateOK     = "ok"
	StateFailed = "failed"
)

// Backup is one backup as the survey shows it.
type Backup struct {
	ID         string    `json:"id"`
	Time       time.Time `json:"time"`
	AgeSeconds float64   `json:"age_seconds"`
	Size       int64     `json:"size"`
	Verified   string    `json:"verified"` // StateNo, StateOK or StateFailed
	Drilled    string    `json:"drilled"`
	Signed     bool      `json:"signed"` // checked against a verify key, and good
}

// Damage is a backup that cannot be used: damaged, or untrusted (its
// signature is missing or wrong).
type Damage struct {
	ID      string `json:"id"`
	State   string `json:"state"` // "damaged" or "untrusted"
	Problem string `json:"problem"`
}

// Window is the span a point-in-time restore reaches with the archived WAL.
type Window struct {
	From *time.Time `json:"from,omitempty"` // nil: no window
	To   *time.Time `json:"to,omitempty"`
	// NoWAL: there are physical backups but no WAL archived after them.
	NoWAL bool     `json:"no_wal,omitempty"`
	Gaps  []string `json:"gaps,omitempty"` // after the newest physical backup
}

// Row is the backups of one workload's driver and method.
type Row struct {
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	Driver    string `json:"driver"`
	Method    string `json:"method"`
	Backups   int    `json:"backups"` // usable ones
	// Last is the newest usable backup, whatever its proof states.
	Last *Backup `json:"last,omitempty"`
	// LastGood is the newest usable backup whose verify and drill (if
	// any) did not fail: the one ages are measured by.
	LastGood   *Backup  `json:"last_good,omitempty"`
	LastProven *Backup  `json:"last_proven,omitempty"` // verified or drilled
	Damaged    []Damage `json:"damaged,omitempty"`
	PITR       *Window  `json:"pitr,omitempty"`
	// Error: this workload could not be read (the others were).
	Error string `json:"error,omitempty"`
	// Stale says why the row is older than the survey's MaxAge allows.
	Stale string `json:"stale,omitempty"`
}

// Report is a storage surveyed.
type Report struct {
	Storage       string    `json:"storage"`
	Time          time.Time `json:"time"`
	MaxAgeSeconds float64   `json:"max_age_seconds,omitempty"`
	Signatures    bool      `json:"signatures_checked"`
	Rows          []Row     `json:"workloads"`
}

// Options say how to survey.
type Options struct {
	Trust repo.Trust
	Now   time.Time
	// MaxAge, if set, marks the rows whose last good backup is older.
	MaxAge time.Duration
	// Workers is how many workloads are read at once; 0 means 4.
	Workers int
}

// Survey reads every workload of st: one listing of the whole storage
// finds them, then each is listed on its own, a few at once. A workload
// that cannot be read gets its Error; the survey goes on.
func Survey(ctx context.Context, st storage.Storage, o Options) (*Report, error) {
	scopes, err := repo.Workloads(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", st, err)
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	rows := make([][]Row, len(scopes))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(o.Workers, len(scopes)) {
		wg.Go(func() {
			for i := range next {
				rows[i] = surveyScope(ctx, st, scopes[i], o)
			}
		})
	}
	for i := range scopes {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &Report{Storage: st.String(), Time: o.Now, MaxAgeSeconds: o.MaxAge.Seconds(), Signatures: o.Trust.Checks()}
	for _, rs := range rows {
		r.Rows = append(r.Rows, rs...)
	}
	return r, nil
}

// Stale are the rows older than MaxAge allows.
func (r *Report) Stale() []Row {
	var out []Row
	for _, row := range r.Rows {
		if row.Stale != "" {
			out = append(out, row)
		}
	}
	return out
}

// surveyScope reads one workload's driver: a row per method.
func surveyScope(ctx context.Context, st storage.Storage, scope repo.Scope, o Options) []Row {
	entries, err := repo.List(ctx, st, scope, o.Trust)
	if err != nil {
		row := Row{Namespace: scope.Namespace, Workload: scope.Workload, Driver: scope.Driver, Error: err.Error()}
		row.Stale = staleness(row, o)
		return []Row{row}
	}
	byMethod := map[string][]repo.Entry{}
	for _, e := range entries {
		byMethod[e.Manifest.MethodName()] = append(byMethod[e.Manifest.MethodName()], e)
	}
	if len(byMethod) == 0 {
		// A log archive and no backup yet: it belongs to physical backups.
		byMethod[drivers.MethodPhysical] = nil
	}
	var rows []Row
	for _, method := range slices.Sorted(maps.Keys(byMethod)) {
		row := summarise(scope, method, byMethod[method], o)
		if method == drivers.MethodPhysical {
			row.PITR, err = window(ctx, st, scope, byMethod[method], o.Trust)
			if err != nil {
				row.Error = "point-in-time window: " + err.Error()
			}
		}
		row.Stale = staleness(row, o)
		rows = append(rows, row)
	}
	return rows
}

// summarise makes the row of one method's entries (oldest first).
func summarise(scope repo.Scope, method string, entries []repo.Entry, o Options) Row {
	row := Row{Namespace: scope.Namespace, Workload: scope.Workload, Driver: scope.Driver, Method: method}
	for i := len(entries) - 1; i >= 0; i-- {
		e := &entries[i]
		if e.Problem != "" {
			state := "damaged"
			if errors.Is(e.Err(), repo.ErrUntrusted) {
				state = "untrusted"
			}
			row.Damaged = append(row.Damaged, Damage{ID: e.Manifest.ID, State: state, Problem: e.Problem})
			continue
		}
		row.Backups++
		b := backupOf(e, o.Now)
		if row.Last == nil {
			row.Last = b
		}
		if row.LastGood == nil && b.Verified != StateFailed && b.Drilled != StateFailed {
			row.LastGood = b
		}
		if row.LastProven == nil && e.Proven() {
			row.LastProven = b
		}
	}
	return row
}

func backupOf(e *repo.Entry, now time.Time) *Backup {
	m := e.Manifest
	b := &Backup{ID: m.ID, Time: m.Started.UTC(), AgeSeconds: now.Sub(m.Started).Seconds(), Size: m.Size(),
		Verified: StateNo, Drilled: StateNo, Signed: e.Signed}
	if v := e.Verification; v != nil {
		b.Verified = state(v.OK)
	}
	if d := e.Drill; d != nil {
		b.Drilled = state(d.OK)
	}
	return b
}

func state(ok bool) string {
	if ok {
		return StateOK
	}
	return StateFailed
}

// staleness says why a row fails MaxAge, or "".
func staleness(row Row, o Options) string {
	switch {
	case o.MaxAge <= 0:
		return ""
	case row.Error != "" && row.LastGood == nil:
		return "cannot be read: " + row.Error
	case row.LastGood == nil:
		return "no good backup"
	}
	age := o.Now.Sub(row.LastGood.Time)
	if age <= o.MaxAge {
		return ""
	}
	return fmt.Sprintf("last good backup %s is %s old, more than %s", row.LastGood.ID, short(age.Round(time.Minute)), short(o.MaxAge))
}

// window is the point-in-time window of a workload's backups, or nil when
// none can start one.
func window(ctx context.Context, st storage.Storage, scope repo.Scope, entries []repo.Entry, trust repo.Trust) (*Window, error) {
	w, has, err := pitr.Reachable(ctx, st, scope, entries, trust)
	if err != nil || !has {
		return nil, err
	}
	out := &Window{NoWAL: w.From.IsZero() && len(w.Gaps) == 0}
	if !w.From.IsZero() {
		from, to := w.From.UTC(), w.To.UTC()
		out.From, out.To = &from, &to
	}
	for _, g := range w.Gaps {
		out.Gaps = append(out.Gaps, g.String())
	}
	return out, nil
}

// short prints a duration without its zero seconds: 26h0m, not 26h0m0s.
func short(d time.Duration) string {
	if s := d.String(); d >= time.Minute {
		return strings.TrimSuffix(s, "0s")
	}
	return d.String()
}
