package agent

import (
	"context"
	"fmt"
	"time"

	"remora.dev/remora/control"
	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/pitr"
	"remora.dev/remora/repo"
	"remora.dev/remora/spec"
	"remora.dev/remora/storage"
)

// DefaultSlot is the physical replication slot the agent streams WAL
// through, when the configuration names none.
const DefaultSlot = "remora"

// DefaultRetainWarn is how much WAL the slot may hold back on the server
// before the agent warns: the archive is that far behind (a storage down,
// the sidecar stopped), and the server's disk pays for it.
const DefaultRetainWarn = 1 << 30

// walStream is the running WAL streamer.
type walStream struct {
	flush    time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
	streamer *postgres.WALStreamer // PostgreSQL's WAL
	binlog   *mysql.BinlogStreamer // or MySQL's binary log
}

// pitrOn reports whether s asks for log streaming: remora.dev/pitr, else
// the agent's --pitr, for the postgres (WAL) and mysql (binary log)
// drivers.
func (a *Agent) pitrOn(s spec.Spec) bool {
	on := a.cfg.PITR
	if s.PITR != "" {
		on = s.PITR == "on"
	}
	d := a.driver(s)
	return on && (d == "postgres" || d == mysql.Name)
}

// reconcilePITR starts, restarts (a new flush interval) or stops the WAL
// streamer to match the configuration in force.
func (a *Agent) reconcilePITR(ctx context.Context) {
	s := a.Spec()
	want := a.pitrOn(s)
	a.mu.Lock()
	cur := a.wal
	a.mu.Unlock()
	if cur != nil && (!want || cur.flush != s.PITRFlush) {
		cur.cancel()
		<-cur.done
		a.mu.Lock()
		a.wal = nil
		a.mu.Unlock()
		if !want && cur.binlog == nil {
			a.log.Warn("WAL streaming switched off; the replication slot stays and keeps WAL on the server until it is dropped: SELECT pg_drop_replication_slot('" + a.slot() + "')")
		}
		cur = nil
	}
	if want && cur == nil {
		if err := a.startWAL(ctx, s); err != nil {
			a.log.Error("cannot start WAL streaming", "error", err)
		}
	}
}

func (a *Agent) slot() string {
	if a.cfg.PITRSlot != "" {
		return a.cfg.PITRSlot
	}
	return DefaultSlot
}

// startWAL starts streaming into every destination.
func (a *Agent) startWAL(ctx context.Context, s spec.Spec) error {
	var stores []storage.Storage
	for _, d := range a.cfg.Storage {
		raw, _, _ := repo.SplitDestination(d)
		st, err := storage.Open(ctx, raw, storage.Options{Logger: a.log})
		if err != nil {
			return err
		}
		stores = append(stores, st)
	}
	compression := s.Compression
	if compression == "" {
		compression = a.cfg.Compression
	}
	scope := repo.Scope{Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Driver: a.driver(s)}
	archive := &repo.LogArchive{Scope: scope, Storages: stores, Compression: compression, Recipients: a.cfg.Recipients, Signer: a.cfg.Signer, Now: a.clock.Now}
	w := &walStream{flush: s.PITRFlush, done: make(chan struct{})}
	sctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	run := func(ctx context.Context) error { return nil }
	if scope.Driver == mysql.Name {
		w.binlog = &mysql.BinlogStreamer{DSN: a.cfg.DSN, Flush: s.PITRFlush,
			Sink: &pitr.BinlogSink{Archive: archive, Log: a.log}, Log: a.log.With("task", "binlog")}
		run = w.binlog.Run
		go a.watchWindow(sctx, s)
		a.log.Info("binary log streaming on", "flush", s.PITRFlush.String())
	} else {
		w.streamer = &postgres.WALStreamer{DSN: a.cfg.DSN, Slot: a.slot(), Flush: s.PITRFlush,
			Sink: &pitr.Sink{Archive: archive, Log: a.log}, Log: a.log.With("task", "wal")}
		run = w.streamer.Run
		go a.watchSlot(sctx, s)
		a.log.Info("WAL streaming on", "slot", a.slot(), "flush", s.PITRFlush.String())
	}
	a.mu.Lock()
	a.wal = w
	a.mu.Unlock()
	go func() {
		defer close(w.done)
		run(sctx)
	}()
	return nil
}

// watchWindow reads the restorable window again every ten minutes.
func (a *Agent) watchWindow(ctx context.Context, s spec.Spec) {
	for {
		a.refreshWindow(ctx, s)
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Minute):
		}
	}
}

// watchSlot reads, every minute, how much WAL the slot holds back on the
// server (the streamer may be down: this is what fills the server's
// disk), and warns once each time it passes the limit; every ten minutes
// it reads the restorable window again.
func (a *Agent) watchSlot(ctx context.Context, s spec.Spec) {
	drv, err := drivers.New("postgres", drivers.Config{DSN: a.cfg.DSN})
	if err != nil {
		return
	}
	pg, ok := drv.(*postgres.Driver)
	if !ok {
		return
	}
	limit := a.cfg.PITRRetainWarn
	if limit == 0 {
		limit = DefaultRetainWarn
	}
	warned := false
	for tick := 0; ; tick++ {
		if tick%10 == 0 {
			a.refreshWindow(ctx, s)
		}
		n, err := pg.SlotRetained(ctx, a.slot())
		if err == nil {
			a.metrics.slotRetained.Set(float64(n))
			if n > limit && !warned {
				a.log.Warn("the replication slot holds back more WAL on the server than the limit: the archive is behind (is a storage down?); the server's disk fills until it catches up",
					"slot", a.slot(), "retained_bytes", n, "limit_bytes", limit)
			}
			warned = n > limit
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

// stopWAL stops the streamer, if one runs.
func (a *Agent) stopWAL() {
	a.mu.Lock()
	w := a.wal
	a.wal = nil
	a.mu.Unlock()
	if w != nil {
		w.cancel()
		<-w.done
	}
}

// logStats is a log streamer's progress, for metrics.
type logStats struct {
	Connected bool
	StoredAt  time.Time
	LagBytes  uint64 // what the server has that the archive does not (binary log: received and not stored)
	Gaps      int
}

// walStats is the streamer's progress, if one runs.
func (a *Agent) walStats() (logStats, bool) {
	a.mu.Lock()
	w := a.wal
	a.mu.Unlock()
	switch {
	case w == nil:
		return logStats{}, false
	case w.binlog != nil:
		st := w.binlog.Stats()
		return logStats{Connected: st.Connected, StoredAt: st.StoredAt, LagBytes: st.Pending, Gaps: st.Gaps}, true
	}
	st := w.streamer.Stats()
	return logStats{Connected: st.Connected, StoredAt: st.StoredAt, LagBytes: lagBytes(st), Gaps: st.Gaps}, true
}

// walStatus is the streamer's part of the status.
func (a *Agent) walStatus() *control.WALStatus {
	a.mu.Lock()
	w := a.wal
	a.mu.Unlock()
	if w == nil {
		return nil
	}
	var out *control.WALStatus
	var storedAt time.Time
	if w.binlog != nil {
		st := w.binlog.Stats()
		out = &control.WALStatus{Kind: "binlog", Connected: st.Connected, Stored: fmt.Sprintf("%s@%d", st.File, st.Stored),
			LagBytes: st.Pending, Gaps: st.Gaps, Error: st.LastError}
		storedAt = st.StoredAt
	} else {
		st := w.streamer.Stats()
		out = &control.WALStatus{Slot: a.slot(), Connected: st.Connected, Timeline: st.Timeline, Stored: st.Stored.String(),
			LagBytes: lagBytes(st), Gaps: st.Gaps, Error: st.LastError}
		storedAt = st.StoredAt
	}
	a.mu.Lock()
	win := a.window
	a.mu.Unlock()
	out.WindowFrom, out.WindowTo = win.From.UTC(), win.To.UTC()
	if win.From.IsZero() {
		out.WindowFrom, out.WindowTo = time.Time{}, time.Time{}
	}
	for _, g := range win.Gaps {
		out.WindowGaps = append(out.WindowGaps, g.String())
	}
	if !storedAt.IsZero() {
		out.LastArchived = storedAt.UTC()
	}
	return out
}

// lagBytes is how much WAL the server has that the archive does not.
func lagBytes(st postgres.WALStats) uint64 {
	if st.ServerEnd > st.Stored {
		return uint64(st.ServerEnd - st.Stored)
	}
	return 0
}

// prunePITR removes the archived WAL that no kept physical backup needs,
// after a physical backup's retention ran in each destination.
func (a *Agent) prunePITR(ctx context.Context, s spec.Spec, stored []storage.Storage) {
	scope := repo.Scope{Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Driver: a.driver(s)}
	prune := pitr.PruneWAL
	if scope.Driver == mysql.Name {
		prune = pitr.PruneBinlogs
	}
	for _, st := range stored {
		n, err := prune(ctx, st, scope, a.cfg.Trust)
		if err != nil {
			a.log.Error("log archive retention failed", "storage", st.String(), "error", err)
			continue
		}
		if n > 0 {
			a.log.Info("log archive retention removed files no kept backup needs", "storage", st.String(), "files", n)
		}
	}
}

// refreshWindow reads the span a point-in-time restore can reach from the
// first destination: its backups and archived log.
func (a *Agent) refreshWindow(ctx context.Context, s spec.Spec) {
	if len(a.cfg.Storage) == 0 {
		return
	}
	raw, _, _ := repo.SplitDestination(a.cfg.Storage[0])
	st, err := storage.Open(ctx, raw, storage.Options{Logger: a.log})
	if err != nil {
		return
	}
	scope := repo.Scope{Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Driver: a.driver(s)}
	entries, err := repo.List(ctx, st, scope, a.cfg.Trust)
	if err != nil {
		return
	}
	w, _, err := pitr.Reachable(ctx, st, scope, entries, a.cfg.Trust)
	if err != nil {
		a.log.Warn("cannot read the restorable window", "storage", st.String(), "error", err)
		return
	}
	a.mu.Lock()
	a.window = w
	a.mu.Unlock()
}
