// Package agent is `remora agent`, the sidecar's long-running process: it
// follows the pod's remora.dev annotations as they change, runs backups on
// their schedule (never two at once), answers the control socket (status,
// backup now) and serves metrics. A run's data path is repo.Backup.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"remora.dev/remora/agent/notify"
	"remora.dev/remora/control"
	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/prio"
	"remora.dev/remora/internal/watch"
	"remora.dev/remora/pitr"
	"remora.dev/remora/repo"
	"remora.dev/remora/repo/retention"
	"remora.dev/remora/spec"
)

// Config is what the agent is started with: the environment the webhook
// sets, and where its files are.
type Config struct {
	Namespace, Workload string
	Driver              string // detected by the webhook; remora.dev/driver overrides
	DSN                 string
	Storage             []string // destinations: URLs, each with an optional #retention
	Paths               []string // remora.dev/paths overrides
	DumpArgs            []string
	Compression         string // when remora.dev/compression is not set; empty: zstd
	Method              string // when remora.dev/method is not set; empty: logical
	// Priority is the priority of backups and drills when
	// remora.dev/priority is not set; empty: prio.Default.
	Priority prio.Priority
	// MaxRate caps the bytes per second read from the database when
	// remora.dev/max-rate is not set; 0: no cap.
	MaxRate    int64
	Recipients *repo.Recipients
	Identities *repo.Identities // decrypt an encrypted backup for a restore drill
	Signer     *repo.SigningKey // signs every manifest; nil: unsigned
	Trust      repo.Trust       // which backups retention counts
	// RetentionFloor is kept whatever the annotations' retention says.
	RetentionFloor *retention.Policy
	// PITR streams PostgreSQL's WAL when remora.dev/pitr is not set.
	PITR bool
	// PITRSlot is the replication slot (DefaultSlot when empty);
	// PITRRetainWarn the WAL it may hold back before a warning
	// (DefaultRetainWarn when 0).
	PITRSlot        string
	PITRRetainWarn  uint64
	AnnotationsFile string
	Socket          string
	MetricsAddr     string // empty: no metrics server
	Pod             string
	Notify          notify.Config
	// Events reports failures as Kubernetes Events on the pod; nil: none.
	Events *Events
	Logger *slog.Logger
	Clock  Clock // nil: the real clock
}

// PollInterval is how often the annotations file is read again, besides
// watching it for changes.
const PollInterval = 10 * time.Second

// recentResults is how many finished runs the agent remembers for the
// progress streams of clients that ask late.
const recentResults = 16

// Agent is a running sidecar.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	metrics *metrics
	// backupFn runs one backup, drillFn one restore drill; tests of the
	// schedule replace them.
	backupFn func(ctx context.Context, r *run) error
	drillFn  func(ctx context.Context, r *run) error

	mu        sync.Mutex
	spec      spec.Spec
	specErr   error
	badAnn    map[string]string // the annotations specErr is about
	next      time.Time
	current   *run
	recent    []*run // finished runs, newest last
	lastOK    time.Time
	runs      int
	skipped   int
	reloaded  chan struct{}
	ready     bool
	runCtx    context.Context
	notifying sync.WaitGroup
	wal       *walStream  // the WAL streamer, while one runs
	window    pitr.Window // what a point-in-time restore can reach, as last read
	drillNext time.Time   // when the next restore drill runs; zero: none
	lastDrill *repo.Drill
}

// New checks the configuration and reads the annotations once.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if err := (repo.Scope{Namespace: cfg.Namespace, Workload: cfg.Workload}).Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Storage) == 0 {
		return nil, errors.New("no storage configured: set REMORA_STORAGE (the storage Secret may be missing)")
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, metrics: newMetrics(), reloaded: make(chan struct{}, 1)}
	a.backupFn, a.drillFn = a.backup, a.drill
	a.metrics.walFrom(a.walStats)
	s, err := spec.Parse(nil, a.seed())
	if err != nil {
		return nil, err
	}
	a.spec = s
	a.metrics.setSchedule(s.Schedule)
	a.reload()
	return a, nil
}

func (a *Agent) seed() string { return a.cfg.Namespace + "/" + a.cfg.Workload }

// Spec is the configuration in force.
func (a *Agent) Spec() spec.Spec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.spec
}

// driver is the driver of the configuration in force: the annotation's, else
// the detected one.
func (a *Agent) driver(s spec.Spec) string {
	if s.Driver != "" {
		return s.Driver
	}
	return a.cfg.Driver
}

// scope is where the agent's backups live.
func (a *Agent) scope(s spec.Spec) repo.Scope {
	return repo.Scope{Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Driver: a.driver(s), Method: a.method(s)}
}

// method is how the agent backs up: remora.dev/method, else its --method,
// else logical.
func (a *Agent) method(s spec.Spec) string {
	switch {
	case s.Method != "":
		return s.Method
	case a.cfg.Method != "":
		return a.cfg.Method
	}
	return drivers.MethodLogical
}

// priority is the priority of the runs: remora.dev/priority, else the
// agent's --priority, else prio.Default. Read at each run, so a changed
// annotation holds from the next one.
func (a *Agent) priority(s spec.Spec) prio.Priority {
	switch {
	case s.Priority != "":
		return s.Priority
	case a.cfg.Priority != "":
		return a.cfg.Priority
	}
	return prio.Default
}

// maxRate is remora.dev/max-rate, else the agent's --max-rate (0: no cap).
func (a *Agent) maxRate(s spec.Spec) int64 {
	if s.MaxRate > 0 {
		return s.MaxRate
	}
	return a.cfg.MaxRate
}

// reload reads the annotations file. An invalid or unreadable file keeps the
// last good configuration and is reported once per distinct error.
func (a *Agent) reload() {
	if a.cfg.AnnotationsFile == "" {
		return
	}
	ann, err := spec.ReadFile(a.cfg.AnnotationsFile)
	if errors.Is(err, fs.ErrNotExist) {
		ann, err = nil, nil // no downward-API volume (outside Kubernetes): the defaults
	}
	var s spec.Spec
	if err == nil {
		s, err = spec.Parse(ann, a.seed())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		// The file is read on every change and poll: the same bad
		// annotations (or the same unreadable file) are reported once.
		if a.specErr == nil || !maps.Equal(ann, a.badAnn) {
			a.log.Error("the pod's remora.dev annotations are not valid; the last good configuration stays in force", "error", err)
			a.metrics.configErrors.Inc()
			a.cfg.Events.Warning(ReasonInvalidAnnotations, "the remora.dev annotations are not valid; the last good configuration stays in force: "+err.Error())
		}
		a.specErr, a.badAnn = err, ann
		a.metrics.configValid.Set(0)
		return
	}
	if a.specErr != nil {
		a.log.Info("the pod's remora.dev annotations are valid again")
	}
	a.specErr = nil
	a.metrics.configValid.Set(1)
	if !reflect.DeepEqual(s, a.spec) {
		if a.ready {
			a.log.Info("configuration changed", "schedule", s.Schedule.String(), "retention", s.Retention.String())
		}
		if s.Schedule.Expanded() != a.spec.Schedule.Expanded() {
			a.metrics.setSchedule(s.Schedule)
		}
		a.spec = s
		select {
		case a.reloaded <- struct{}{}:
		default:
		}
	}
}

// Run runs the agent until ctx ends. A backup running then is stopped and
// cleaned up before Run returns.
func (a *Agent) Run(ctx context.Context) error {
	ctl, err := control.Listen(a.cfg.Socket, a)
	if err != nil {
		return err
	}
	defer ctl.Close()
	if a.cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		srv := &http.Server{Handler: a.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}
	runCtx, stopRuns := context.WithCancel(context.Background())
	defer stopRuns()
	a.mu.Lock()
	a.runCtx = runCtx
	a.ready = true
	a.mu.Unlock()
	if a.cfg.AnnotationsFile != "" {
		go watch.Dirs(ctx, []string{filepath.Dir(a.cfg.AnnotationsFile)}, PollInterval, a.log, a.reload)
	}
	go a.lastSuccessFromStorage(runCtx)
	a.reconcilePITR(runCtx)
	defer a.stopWAL()
	a.log.Info("agent started", "namespace", a.cfg.Namespace, "workload", a.cfg.Workload, "schedule", a.Spec().Schedule.String(),
		"socket", a.cfg.Socket, "metrics", a.cfg.MetricsAddr)

	a.scheduleLoop(ctx, runCtx)

	// Stop: interrupt a running backup; the backup removes what it wrote.
	stopRuns()
	if r := a.running(); r != nil {
		a.log.Warn("stopping: interrupting the running backup", "run", r.n)
		<-r.done
	}
	a.notifying.Wait()
	a.cfg.Events.Wait()
	a.log.Info("agent stopped")
	return nil
}

// scheduleLoop waits for the next scheduled time, and starts over whenever
// the configuration changes.
func (a *Agent) scheduleLoop(ctx, runCtx context.Context) {
	for {
		now := a.clock.Now()
		next := a.Spec().Schedule.Next(now)
		a.mu.Lock()
		a.next = next
		a.mu.Unlock()
		fire, stop := a.clock.After(next.Sub(now))
		drillAt, drillFire, stopDrill := a.nextDrill(now)
		a.mu.Lock()
		a.drillNext = drillAt
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			stop()
			stopDrill()
			return
		case <-a.reloaded:
			stop()
			stopDrill()
			a.reconcilePITR(runCtx)
		case <-fire:
			stopDrill()
			a.trigger(runCtx, triggerSchedule)
		case <-drillFire:
			stop()
			a.trigger(runCtx, triggerDrill)
		}
	}
}
