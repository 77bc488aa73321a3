package agent

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"remora.dev/remora/control"
	"remora.dev/remora/drill"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

// triggerDrill starts a restore drill of the newest backup
// (remora.dev/drill); it runs as a run of its own, never beside a backup.
const triggerDrill = "drill"

// drill restores the newest backup of the first storage into a throwaway
// server and records the outcome beside it, signed as manifests are. It
// stops at remora.dev/timeout as a backup does.
func (a *Agent) drill(ctx context.Context, r *run) error {
	s := a.Spec()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	if a.cfg.Socket != "" {
		release, err := control.Lock(a.cfg.Socket)
		if err != nil {
			return fmt.Errorf("drill not started: %w in this pod (lock %s)", err, filepath.Join(filepath.Dir(a.cfg.Socket), control.LockName))
		}
		defer release()
	}
	raw, _, _ := repo.SplitDestination(a.cfg.Storage[0])
	st, err := storage.Open(ctx, raw, storage.Options{Logger: a.log})
	if err != nil {
		return err
	}
	entries, err := repo.List(ctx, st, a.scope(s), a.cfg.Trust)
	if err != nil {
		return err
	}
	e, err := repo.Select(entries, repo.Selector{Latest: true})
	if err != nil {
		return err
	}
	d, err := drill.Run(ctx, st, e, drill.Options{User: dsnUser(a.cfg.DSN), Logger: a.log, Identities: a.cfg.Identities, Priority: a.priority(s)})
	if err != nil {
		return fmt.Errorf("drill of %s: %w", e.Manifest.ID, err)
	}
	r.result.ID = e.Manifest.ID
	a.mu.Lock()
	a.lastDrill = &d
	a.mu.Unlock()
	if a.cfg.Signer != nil || !a.cfg.Trust.Checks() {
		if err := repo.WriteDrill(ctx, st, e, d, a.cfg.Signer); err != nil {
			a.log.Error("the drill's record could not be stored", "id", e.Manifest.ID, "error", err)
		}
	}
	if !d.OK {
		return fmt.Errorf("backup %s failed its restore drill: %w", e.Manifest.ID, errors.New(d.Problems[0]))
	}
	return nil
}

// recordDrill logs a finished drill and counts it in the metrics.
func (a *Agent) recordDrill(r *run, err error) {
	m := a.metrics
	m.drillLastRun.Set(float64(r.started.Unix()))
	if err != nil {
		m.drillFailures.Inc()
		a.log.Error("restore drill failed", "run", r.n, "id", r.result.ID, "error", err, "seconds", r.result.Seconds)
		if !r.result.Interrupted {
			a.cfg.Events.Warning(ReasonDrillFailed, fmt.Sprintf("restore drill run %d of backup %s failed: %v", r.n, r.result.ID, err))
		}
		return
	}
	m.drillLastSuccess.Set(float64(r.started.Unix()))
	m.drillDuration.Set(r.result.Seconds)
	a.log.Info("restore drill passed", "run", r.n, "id", r.result.ID, "seconds", r.result.Seconds)
}

// nextDrill is when the next drill runs; the zero time and a nil channel
// when remora.dev/drill is off.
func (a *Agent) nextDrill(now time.Time) (time.Time, <-chan time.Time, func()) {
	d := a.Spec().Drill
	if d == nil {
		return time.Time{}, nil, func() {}
	}
	next := d.Next(now)
	fire, stop := a.clock.After(next.Sub(now))
	return next, fire, stop
}

// dsnUser is the user a URL-style DSN names, if any.
func dsnUser(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return ""
	}
	return u.User.Username()
}
