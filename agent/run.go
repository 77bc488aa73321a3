package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"remora.dev/remora/agent/notify"
	"remora.dev/remora/control"
	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/internal/prio"
	"remora.dev/remora/internal/redact"
	"remora.dev/remora/repo"
	"remora.dev/remora/spec"
	"remora.dev/remora/storage"
)

// What starts a run.
const (
	triggerSchedule = "schedule"
	triggerRequest  = "request" // `remora backup` through the control socket
)

type run struct {
	n        int
	trigger  string
	started  time.Time
	progress *repo.Progress
	done     chan struct{} // closed when result is final
	result   control.RunResult
}

// what the run is, for logs: a backup or a restore drill.
func (r *run) what() string {
	if r.trigger == triggerDrill {
		return "restore drill"
	}
	return "backup"
}

func (a *Agent) running() *run {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}

// trigger starts a backup unless one is running; it returns the run, and
// whether it is a new one.
func (a *Agent) trigger(ctx context.Context, why string) (*run, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.current != nil {
		if why == triggerSchedule || why == triggerDrill {
			a.skipped++
			a.metrics.skipped.Inc()
			a.log.Warn("a scheduled "+(&run{trigger: why}).what()+" is skipped: the previous run is still going", "running", a.current.n)
		}
		return a.current, false
	}
	a.runs++
	r := &run{n: a.runs, trigger: why, started: a.clock.Now().UTC(), progress: &repo.Progress{}, done: make(chan struct{})}
	a.current = r
	a.metrics.running.Set(1)
	go a.execute(ctx, r)
	return r, true
}

// execute runs r to its end and records its outcome.
func (a *Agent) execute(ctx context.Context, r *run) {
	a.log.Info(r.what()+" started", "run", r.n, "trigger", r.trigger)
	fn := a.backupFn
	if r.trigger == triggerDrill {
		fn = a.drillFn
	}
	err := fn(ctx, r)
	res := &r.result
	res.Run, res.Trigger, res.Started = r.n, r.trigger, r.started
	res.Finished = a.clock.Now().UTC()
	res.Seconds = res.Finished.Sub(r.started).Seconds()
	res.OK = err == nil && res.Skipped == ""
	if err != nil {
		res.Error = err.Error()
		res.Interrupted = ctx.Err() != nil
	}
	if r.trigger == triggerDrill {
		a.recordDrill(r, err)
	} else {
		a.record(r, err)
	}
	a.mu.Lock()
	if res.OK && r.trigger != triggerDrill {
		a.lastOK = r.started
	}
	a.recent = append(a.recent, r)
	if len(a.recent) > recentResults {
		a.recent = a.recent[1:]
	}
	a.current = nil
	a.metrics.running.Set(0)
	a.mu.Unlock()
	if r.trigger != triggerDrill && (res.Skipped == "" || err != nil) {
		a.notify(res)
	}
	close(r.done)
}

// record logs a finished run and counts it in the metrics.
func (a *Agent) record(r *run, err error) {
	res := &r.result
	snap := r.progress.Snapshot()
	m := a.metrics
	m.bytesRead.Add(float64(snap.BytesRead))
	m.bytesWritten.Add(float64(snap.BytesStored))
	m.lastRun.Set(unixSeconds(r.started))
	switch {
	case res.Skipped != "" && err == nil:
		m.runs.WithLabelValues("skipped").Inc()
		a.log.Info("no backup: this pod is not the member that backs up", "run", r.n, "why", res.Skipped)
	case res.OK:
		m.runs.WithLabelValues("success").Inc()
		m.lastSuccess.Set(unixSeconds(r.started))
		m.duration.Set(res.Seconds)
		m.size.Set(float64(res.Size))
		a.log.Info("backup succeeded", "run", r.n, "id", res.ID, "seconds", res.Seconds, "size", res.Size, "pruned", res.Pruned)
	default:
		m.runs.WithLabelValues("failure").Inc()
		m.failures.Inc()
		m.lastFailure.Set(unixSeconds(r.started))
		m.destFailures.Add(float64(len(res.FailedIn)))
		a.log.Error("backup failed", "run", r.n, "error", err, "seconds", res.Seconds)
		if !res.Interrupted {
			a.cfg.Events.Warning(ReasonBackupFailed, fmt.Sprintf("backup run %d (%s) failed: %v", r.n, r.trigger, err))
		}
	}
}

// notify sends the run's outcome in the background: a slow or failing
// notifier never delays or fails a backup.
func (a *Agent) notify(res *control.RunResult) {
	ev := notify.Event{Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Pod: a.cfg.Pod, Driver: a.driver(a.Spec()),
		OK: res.OK, Error: redact.String(res.Error), ID: res.ID, Size: res.Size, Seconds: res.Seconds, Time: res.Finished}
	if !a.cfg.Notify.Wants(ev) {
		return
	}
	a.notifying.Add(1)
	go func() {
		defer a.notifying.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, err := range a.cfg.Notify.Send(ctx, ev) {
			a.metrics.notifyErrors.Inc()
			a.log.Error("a notification could not be sent", "error", err)
		}
	}()
}

// backup is one real run with the configuration in force, stopped at the
// deadline remora.dev/timeout sets: a dump that hangs (a lock never granted,
// a server that no longer answers) fails, is cleaned up like any failed run,
// and lets later runs start.
func (a *Agent) backup(ctx context.Context, r *run) error {
	s := a.Spec()
	deadline := fmt.Errorf("deadline exceeded: the run took longer than %s=%s and was stopped (raise it for longer backups)",
		spec.AnnotationTimeout, shortDuration(s.Timeout))
	ctx, cancel := context.WithTimeoutCause(ctx, s.Timeout, deadline)
	defer cancel()
	err := a.backupWith(ctx, s, r)
	if err != nil && context.Cause(ctx) == deadline {
		return fmt.Errorf("%w: %w", deadline, err)
	}
	return err
}

// shortDuration writes d as an annotation would: 6h, 90m, 1h30m, 1s.
func shortDuration(d time.Duration) string {
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	if strings.HasSuffix(out, "h0m") {
		out = strings.TrimSuffix(out, "0m")
	}
	return out
}

func (a *Agent) backupWith(ctx context.Context, s spec.Spec, r *run) error {
	paths := a.cfg.Paths
	if len(s.Paths) > 0 {
		paths = s.Paths
	}
	drv, err := drivers.New(a.driver(s), drivers.Config{DSN: a.cfg.DSN, Databases: s.Databases, Paths: paths, DumpArgs: a.cfg.DumpArgs, Method: a.method(s)})
	if err != nil {
		return err
	}
	if skip, err := a.notThisMember(ctx, s.Member, drv); err != nil || skip != "" {
		r.result.Skipped = skip
		return err
	}
	// A restore (or a `remora backup` run by hand without the agent) holds
	// the pod's lock: this run does not start, and fails saying why.
	if a.cfg.Socket != "" {
		release, err := control.Lock(a.cfg.Socket)
		if err != nil {
			return fmt.Errorf("backup not started: %w in this pod (lock %s)", err, filepath.Join(filepath.Dir(a.cfg.Socket), control.LockName))
		}
		defer release()
	}
	dests, err := repo.OpenDestinations(ctx, a.cfg.Storage, &s.Retention, storage.Options{Logger: a.log})
	if err != nil {
		return err
	}
	compression := s.Compression
	if compression == "" {
		compression = a.cfg.Compression
	}
	res, err := repo.Backup(prio.With(ctx, a.priority(s), a.log), repo.BackupOptions{
		Scope: a.scope(s), Driver: drv, Destinations: dests, Compression: compression, Recipients: a.cfg.Recipients, MaxRate: a.maxRate(s),
		Signer: a.cfg.Signer, Trust: a.cfg.Trust, RetentionFloor: a.cfg.RetentionFloor, Logger: a.log, Progress: r.progress, Now: a.clock.Now,
	})
	if res != nil {
		out := &r.result
		out.ID, out.Size, out.Databases, out.Warnings = res.Manifest.ID, res.Manifest.Size(), res.Manifest.Databases, len(res.Manifest.Warnings)
		for _, s := range res.Stored {
			out.StoredIn = append(out.StoredIn, s.String())
			out.Pruned += len(res.Pruned[s.String()])
		}
		for _, f := range res.Failed {
			out.FailedIn = append(out.FailedIn, f.Storage.String())
		}
		for _, err := range res.PruneErrors {
			if errors.Is(err, repo.ErrFutureBackups) {
				a.metrics.retentionStopped.Inc()
			}
		}
		if (a.method(s) == drivers.MethodPhysical || a.driver(s) == mysql.Name) && len(res.Stored) > 0 {
			a.prunePITR(ctx, s, res.Stored)
			a.refreshWindow(ctx, s)
		}
	}
	return err
}

// notThisMember decides remora.dev/member at each run, from the database
// itself: it returns why this pod does not back up, or "" if it does.
func (a *Agent) notThisMember(ctx context.Context, member string, drv drivers.Driver) (string, error) {
	switch {
	case member == "" || member == "any":
		return "", nil
	case strings.HasPrefix(member, "ordinal-"):
		want := strings.TrimPrefix(member, "ordinal-")
		i := strings.LastIndexByte(a.cfg.Workload, '-')
		if i >= 0 && a.cfg.Workload[i+1:] == want {
			return "", nil
		}
		return fmt.Sprintf("%s is %s and this pod is %s", spec.AnnotationMember, member, a.cfg.Workload), nil
	}
	replica := false
	err := drivers.ErrNoRole
	if roler, ok := drv.(drivers.Roler); ok {
		replica, err = roler.Replica(ctx)
	}
	if errors.Is(err, drivers.ErrNoRole) {
		return "", fmt.Errorf("%s=%s: %w; use any or ordinal-N", spec.AnnotationMember, member, err)
	}
	if err != nil {
		return "", fmt.Errorf("%s=%s: cannot tell this server's role: %w", spec.AnnotationMember, member, err)
	}
	if replica == (member == "replica") {
		return "", nil
	}
	role := "the primary"
	if replica {
		role = "a replica"
	}
	return fmt.Sprintf("%s is %s and this server is %s", spec.AnnotationMember, member, role), nil
}

// lastSuccessFromStorage sets the last-success metric from the newest backup
// in the first storage, so that a restarted agent does not look as if it
// never backed up.
func (a *Agent) lastSuccessFromStorage(ctx context.Context) {
	raw, _, _ := repo.SplitDestination(a.cfg.Storage[0])
	st, err := storage.Open(ctx, raw, storage.Options{Logger: a.log})
	if err != nil {
		return
	}
	entries, err := repo.List(ctx, st, a.scope(a.Spec()), a.cfg.Trust)
	if err != nil {
		a.log.Warn("cannot read earlier backups", "storage", st.String(), "error", err)
		return
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Problem == "" {
			a.mu.Lock()
			if a.lastOK.IsZero() {
				a.lastOK = entries[i].Manifest.Started
				a.metrics.lastSuccess.Set(unixSeconds(a.lastOK))
			}
			a.mu.Unlock()
			return
		}
	}
}
