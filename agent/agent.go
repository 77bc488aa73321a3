// Package agent is `remora agent`, the sidecar's long-running process: it
// follows the pod's remora.dev annotations as they change, runs backups on
// their schedule (never two at once), answers the control socket (status,
// backup now) and serves metrics.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"remora.dev/remora/agent/backup"
	"remora.dev/remora/agent/config"
	"remora.dev/remora/agent/notify"
	"remora.dev/remora/agent/retention"
	"remora.dev/remora/agent/storage"
	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/files"
)

// Config is what the agent is started with: the environment the webhook
// sets, and where its files are.
type Config struct {
	Namespace, Workload string
	Driver              string // detected; remora.dev/driver overrides
	DSN                 string
	Storage             []string // destination URLs, each with an optional #retention
	Paths               []string
	DumpArgs            []string
	Compression         string
	Recipients          *backup.Recipients
	AnnotationsFile     string
	Socket              string
	MetricsAddr         string // empty: no metrics server
	Pod                 string
	Notify              notify.Config
	Logger              *slog.Logger
	Clock               Clock // nil: the real clock
}

// Agent is a running sidecar.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	metrics *metrics
	// backupFn runs one backup; tests of the schedule replace it.
	backupFn func(ctx context.Context, r *run) error

	mu        sync.Mutex
	spec      config.Spec
	specErr   error
	next      time.Time
	current   *run
	last      *RunResult
	lastOK    time.Time
	runs      int
	skipped   int
	reloaded  chan struct{}
	ready     bool
	destLabel []string
	runCtx    context.Context
	notifying sync.WaitGroup
}

// RunResult is what one run did.
type RunResult struct {
	Run         int       `json:"run"`
	Trigger     string    `json:"trigger"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Seconds     float64   `json:"duration_seconds"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	ID          string    `json:"id,omitempty"`
	Size        int64     `json:"size,omitempty"`
	Databases   []string  `json:"databases,omitempty"`
	StoredIn    []string  `json:"stored_in,omitempty"`
	FailedIn    []string  `json:"failed_in,omitempty"`
	Pruned      int       `json:"pruned,omitempty"`
	Warnings    int       `json:"warnings,omitempty"`
	Interrupted bool      `json:"interrupted,omitempty"`
	// Skipped says why no backup was taken although nothing failed (this
	// pod is not the member that backs up).
	Skipped string `json:"skipped,omitempty"`
}

type run struct {
	n        int
	trigger  string
	started  time.Time
	progress *backup.Progress
	done     chan struct{}
	result   RunResult
}

// New checks the configuration and reads the annotations once.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if err := (backup.Scope{Namespace: cfg.Namespace, Workload: cfg.Workload}).Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Storage) == 0 {
		return nil, errors.New("no storage configured: set REMORA_STORAGE (the storage Secret may be missing)")
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, metrics: newMetrics(), reloaded: make(chan struct{}, 1)}
	a.backupFn = a.backup
	spec, err := config.Parse(nil, a.seed())
	if err != nil {
		return nil, err
	}
	a.spec = spec
	a.reload()
	for _, s := range cfg.Storage {
		u, _, _ := cutFragment(s)
		a.destLabel = append(a.destLabel, u)
	}
	return a, nil
}

func (a *Agent) seed() string { return a.cfg.Namespace + "/" + a.cfg.Workload }

// reload reads the annotations file. An invalid or unreadable file keeps the
// last good configuration and is reported once per distinct error.
func (a *Agent) reload() {
	if a.cfg.AnnotationsFile == "" {
		return
	}
	ann, err := config.ReadFile(a.cfg.AnnotationsFile)
	if errors.Is(err, fs.ErrNotExist) {
		ann, err = nil, nil // no downward-API volume (outside Kubernetes): the defaults
	}
	var spec config.Spec
	if err == nil {
		spec, err = config.Parse(ann, a.seed())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if a.specErr == nil || a.specErr.Error() != err.Error() {
			a.log.Error("the pod's remora.dev annotations are not valid; the last good configuration stays in force", "error", err)
			a.metrics.configErrors.Inc()
		}
		a.specErr = err
		a.metrics.configValid.Set(0)
		return
	}
	if a.specErr != nil {
		a.log.Info("the pod's remora.dev annotations are valid again")
	}
	a.specErr = nil
	a.metrics.configValid.Set(1)
	if !reflect.DeepEqual(spec, a.spec) {
		if a.ready {
			a.log.Info("configuration changed", "schedule", spec.Schedule.String(), "retention", spec.Retention.String())
		}
		a.spec = spec
		select {
		case a.reloaded <- struct{}{}:
		default:
		}
	}
}

// Run runs the agent until ctx ends. A backup running then is stopped and
// cleaned up before Run returns.
func (a *Agent) Run(ctx context.Context) error {
	ctl, err := a.listenControl()
	if err != nil {
		return err
	}
	defer ctl.Close()
	var metricsSrv *http.Server
	if a.cfg.MetricsAddr != "" {
		metricsSrv = &http.Server{Addr: a.cfg.MetricsAddr, Handler: a.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		ln, err := listenTCP(a.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		go metricsSrv.Serve(ln)
		defer metricsSrv.Close()
	}
	runCtx, stopRuns := context.WithCancel(context.Background())
	defer stopRuns()
	a.mu.Lock()
	a.runCtx = runCtx
	a.mu.Unlock()
	go a.watch(ctx)
	go a.lastSuccessFromStorage(runCtx)
	a.mu.Lock()
	a.ready = true
	a.mu.Unlock()
	a.log.Info("agent started", "namespace", a.cfg.Namespace, "workload", a.cfg.Workload, "schedule", a.Spec().Schedule.String(),
		"socket", a.cfg.Socket, "metrics", a.cfg.MetricsAddr)

	a.scheduleLoop(ctx, runCtx)

	// Stop: interrupt a running backup; the pipeline removes what it wrote.
	stopRuns()
	if r := a.running(); r != nil {
		a.log.Warn("stopping: interrupting the running backup", "run", r.n)
		<-r.done
	}
	a.notifying.Wait()
	a.log.Info("agent stopped")
	return nil
}

// Spec is the configuration in force.
func (a *Agent) Spec() config.Spec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.spec
}

func (a *Agent) running() *run {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}

// scheduleLoop waits for the next scheduled time, and starts over whenever
// the configuration changes.
func (a *Agent) scheduleLoop(ctx, runCtx context.Context) {
	for {
		spec := a.Spec()
		now := a.clock.Now()
		next := spec.Schedule.Next(now)
		a.mu.Lock()
		a.next = next
		a.mu.Unlock()
		fire, stop := a.clock.After(next.Sub(now))
		select {
		case <-ctx.Done():
			stop()
			return
		case <-a.reloaded:
			stop()
		case <-fire:
			a.trigger(runCtx, "schedule")
		}
	}
}

// trigger starts a backup unless one is running; it returns the run, and
// whether it is a new one.
func (a *Agent) trigger(ctx context.Context, why string) (*run, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.current != nil {
		if why == "schedule" {
			a.skipped++
			a.metrics.skipped.Inc()
			a.log.Warn("a scheduled backup is skipped: the previous one is still running", "running", a.current.n)
		}
		return a.current, false
	}
	a.runs++
	r := &run{n: a.runs, trigger: why, started: a.clock.Now().UTC(), progress: &backup.Progress{}, done: make(chan struct{})}
	a.current = r
	a.metrics.running.Set(1)
	go a.execute(ctx, r)
	return r, true
}

func (a *Agent) execute(ctx context.Context, r *run) {
	a.log.Info("backup started", "run", r.n, "trigger", r.trigger)
	err := a.backupFn(ctx, r)
	res := &r.result
	res.Run, res.Trigger, res.Started = r.n, r.trigger, r.started
	res.Finished = a.clock.Now().UTC()
	res.Seconds = res.Finished.Sub(r.started).Seconds()
	res.OK = err == nil && res.Skipped == ""
	if err != nil {
		res.Error = err.Error()
		res.Interrupted = ctx.Err() != nil
	}
	snap := r.progress.Snapshot()
	a.metrics.bytesRead.Add(float64(snap.BytesRead))
	a.metrics.bytesWritten.Add(float64(snap.BytesStored))
	a.metrics.lastRun.Set(float64(r.started.Unix()))
	if res.Skipped != "" && err == nil {
		a.metrics.runs.WithLabelValues("skipped").Inc()
		a.log.Info("no backup: this pod is not the member that backs up", "run", r.n, "why", res.Skipped)
	} else if res.OK {
		a.metrics.runs.WithLabelValues("success").Inc()
		a.metrics.lastSuccess.Set(float64(r.started.Unix()))
		a.metrics.duration.Set(res.Seconds)
		a.metrics.size.Set(float64(res.Size))
		a.log.Info("backup succeeded", "run", r.n, "id", res.ID, "seconds", res.Seconds, "size", res.Size, "pruned", res.Pruned)
	} else {
		a.metrics.runs.WithLabelValues("failure").Inc()
		a.metrics.failures.Inc()
		a.metrics.destFailures.Add(float64(len(res.FailedIn)))
		a.log.Error("backup failed", "run", r.n, "error", err, "seconds", res.Seconds)
	}
	a.mu.Lock()
	a.last = res
	if res.OK {
		a.lastOK = r.started
	}
	a.current = nil
	a.metrics.running.Set(0)
	a.mu.Unlock()
	if res.Skipped == "" || err != nil {
		a.notify(res)
	}
	close(r.done)
}

// notify sends the run's outcome in the background: a slow or failing
// notifier never delays or fails a backup.
func (a *Agent) notify(res *RunResult) {
	driver := a.cfg.Driver
	if d := a.Spec().Driver; d != "" {
		driver = d
	}
	ev := notify.Event{Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Pod: a.cfg.Pod, Driver: driver,
		OK: res.OK, Error: res.Error, ID: res.ID, Size: res.Size, Seconds: res.Seconds, Time: res.Finished}
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

// backup is one real run with the configuration in force.
func (a *Agent) backup(ctx context.Context, r *run) error {
	spec := a.Spec()
	driver := a.cfg.Driver
	if spec.Driver != "" {
		driver = spec.Driver
	}
	paths := a.cfg.Paths
	if len(spec.Paths) > 0 {
		paths = spec.Paths
	}
	drv, err := drivers.New(driver, drivers.Config{DSN: a.cfg.DSN, Databases: spec.Databases, Paths: paths, DumpArgs: a.cfg.DumpArgs})
	if err != nil {
		return err
	}
	if skip, err := a.notThisMember(ctx, spec.Member, drv); err != nil || skip != "" {
		r.result.Skipped = skip
		return err
	}
	// A restore (or a `remora backup` run by hand without the agent) holds
	// the pod's lock: this run does not start, and fails saying why.
	if a.cfg.Socket != "" {
		release, err := Lock(a.cfg.Socket)
		if err != nil {
			return fmt.Errorf("backup not started: %w in this pod (lock %s)", err, filepath.Join(filepath.Dir(a.cfg.Socket), LockName))
		}
		defer release()
	}
	if len(paths) > 0 && driver != files.Name {
		if drv, err = files.Extra(drv, paths); err != nil {
			return err
		}
	}
	dests, err := a.destinations(ctx, spec.Retention)
	if err != nil {
		return err
	}
	compression := spec.Compression
	if a.cfg.Compression != "" && spec.Compression == "zstd" {
		compression = a.cfg.Compression
	}
	res, err := backup.Run(ctx, backup.Options{
		Scope:  backup.Scope{Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Driver: driver},
		Driver: drv, Destinations: dests, Compression: compression, Recipients: a.cfg.Recipients,
		Logger: a.log, Progress: r.progress, Now: a.clock.Now,
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
		return fmt.Sprintf("remora.dev/member is %s and this pod is %s", member, a.cfg.Workload), nil
	}
	roler, ok := drv.(drivers.Roler)
	if !ok {
		return "", fmt.Errorf("remora.dev/member=%s: this driver cannot tell a primary from a replica; use any or ordinal-N", member)
	}
	replica, err := roler.Replica(ctx)
	if err != nil {
		return "", fmt.Errorf("remora.dev/member=%s: cannot tell this server's role: %w", member, err)
	}
	if replica == (member == "replica") {
		return "", nil
	}
	role := "the primary"
	if replica {
		role = "a replica"
	}
	return fmt.Sprintf("remora.dev/member is %s and this server is %s", member, role), nil
}

// destinations opens the storages with their retention: each URL's own
// after a '#', else the pod's.
func (a *Agent) destinations(ctx context.Context, def retention.Policy) ([]backup.Destination, error) {
	var out []backup.Destination
	for _, s := range a.cfg.Storage {
		raw, spec, own := cutFragment(s)
		st, err := storage.Open(ctx, raw)
		if err != nil {
			return nil, err
		}
		p := def
		if own {
			if p, err = retention.Parse(spec); err != nil {
				return nil, fmt.Errorf("storage %s: %w", st, err)
			}
		}
		out = append(out, backup.Destination{Storage: st, Retention: &p})
	}
	return out, nil
}

func cutFragment(s string) (url, fragment string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '#' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// lastSuccessFromStorage sets the last-success metric from the newest backup
// in the first storage, so that a restarted agent does not look as if it
// never backed up.
func (a *Agent) lastSuccessFromStorage(ctx context.Context) {
	raw, _, _ := cutFragment(a.cfg.Storage[0])
	st, err := storage.Open(ctx, raw)
	if err != nil {
		return
	}
	driver := a.cfg.Driver
	if d := a.Spec().Driver; d != "" {
		driver = d
	}
	entries, err := backup.List(ctx, st, backup.Scope{Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Driver: driver})
	if err != nil {
		a.log.Warn("cannot read earlier backups", "storage", st.String(), "error", err)
		return
	}
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Problem == "" {
			a.mu.Lock()
			if a.lastOK.IsZero() {
				a.lastOK = entries[i].Manifest.Started
				a.metrics.lastSuccess.Set(float64(a.lastOK.Unix()))
			}
			a.mu.Unlock()
			return
		}
	}
}

// watch follows the annotations file as the kubelet updates it: a new
// timestamped directory, then an atomic rename of the ..data symlink. It
// watches the directory and re-reads the file on any change, with a poll
// as a safety net.
func (a *Agent) watch(ctx context.Context) {
	if a.cfg.AnnotationsFile == "" {
		return
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(a.cfg.AnnotationsFile)); err != nil {
			w.Close()
		}
	}
	var events <-chan fsnotify.Event
	if err != nil {
		a.log.Warn("cannot watch the annotations; polling them every 10s", "error", err)
	} else {
		defer w.Close()
		events = w.Events
	}
	poll := time.NewTicker(10 * time.Second)
	defer poll.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			debounce = time.After(100 * time.Millisecond)
		case <-debounce:
			a.reload()
		case <-poll.C:
			a.reload()
		}
	}
}
