package agent

import (
	"context"
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"remora.dev/remora/control"
	"remora.dev/remora/repo"
)

var _ control.Agent = (*Agent)(nil)

// Status reads the agent's state.
func (a *Agent) Status() control.Status {
	wal := a.walStatus() // takes a.mu itself
	a.mu.Lock()
	defer a.mu.Unlock()
	s := control.Status{WAL: wal,
		Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Driver: a.driver(a.spec),
		Schedule: a.spec.Schedule.String(), ScheduleExpanded: a.spec.Schedule.Expanded(), NextRun: a.next,
		Retention: a.spec.Retention.String(), LastSuccess: a.lastOK, SkippedRuns: a.skipped,
	}
	if d := a.spec.Drill; d != nil {
		s.Drill, s.NextDrill = d.String(), a.drillNext
	}
	s.LastDrill = a.lastDrill
	if f := a.cfg.RetentionFloor; f != nil {
		s.RetentionFloor = f.String()
	}
	if k := a.cfg.Signer; k != nil {
		s.SigningKey = k.Verify.ID
	}
	for _, d := range a.cfg.Storage {
		u, _, _ := repo.SplitDestination(d)
		s.Storage = append(s.Storage, u)
	}
	if a.specErr != nil {
		s.ConfigError = a.specErr.Error()
	}
	if r := a.current; r != nil {
		s.Running = &control.RunningStatus{Run: r.n, Trigger: r.trigger, Started: r.started,
			Seconds: a.clock.Now().Sub(r.started).Seconds(), Progress: r.progress.Snapshot()}
	}
	if n := len(a.recent); n > 0 {
		last := a.recent[n-1].result
		s.Last = &last
	}
	return s
}

// StartBackup starts a backup now unless one runs; runs started so stop when
// the agent stops.
func (a *Agent) StartBackup() control.Started {
	a.mu.Lock()
	ctx := a.runCtx
	a.mu.Unlock()
	if ctx == nil {
		ctx = context.Background()
	}
	r, started := a.trigger(ctx, triggerRequest)
	return control.Started{Run: r.n, Started: started, Since: r.started}
}

// Event is run n's progress, or its result once it ended.
func (a *Agent) Event(n int) (control.Event, <-chan struct{}, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.current; r != nil && r.n == n {
		return control.Event{Run: n, Seconds: a.clock.Now().Sub(r.started).Seconds(), Progress: r.progress.Snapshot()}, r.done, true
	}
	for _, r := range a.recent {
		if r.n == n {
			res := r.result
			return control.Event{Run: n, Seconds: res.Seconds, Progress: r.progress.Snapshot(), Done: true, Result: &res}, r.done, true
		}
	}
	return control.Event{}, nil, false
}

func (a *Agent) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		ready := a.ready
		a.mu.Unlock()
		if !ready {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}
