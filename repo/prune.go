package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/repo/retention"
	"remora.dev/remora/storage"
)

// PruneOptions say when and for whom retention runs.
type PruneOptions struct {
	Now    time.Time
	Logger *slog.Logger
	// Written is the ID of the backup the caller has just written: it is
	// never deleted, whatever the policy says.
	Written string
	// Tolerance is how far in the future a backup may lie (a clock a little
	// fast) before pruning stops; 0 means DefaultTolerance.
	Tolerance time.Duration
	// Trust decides which backups count: with keys, a backup whose
	// signature is missing or wrong neither counts nor is deleted.
	Trust Trust
	// StorageNow is the storage's own time, against which the sweep measures
	// the age of what interrupted runs left (the storage stamps them). Zero:
	// ask the storage if it can tell (storage.Clock), else Now.
	StorageNow time.Time
	// Floor, if set, keeps what it would keep whatever the policy says (the
	// storage Secret's REMORA_RETENTION_MIN: no annotation goes below it).
	// Each is applied with its own proven option: a floor that is not proven
	// counts every backup, however the policy counts them.
	Floor *retention.Policy
}

// DefaultTolerance is how far ahead of the clock a backup may have started
// before retention refuses to run.
const DefaultTolerance = time.Hour

// ErrFutureBackups is wrapped by Prune's error when it deleted nothing
// because a backup lies further in the future than the tolerance: a clock
// ran fast (here or where that backup was taken), and a policy counted on it
// could delete the backups that matter.
var ErrFutureBackups = errors.New("retention stopped: a backup lies in the future")

// Prune deletes the backups of a scope that the policy (nil: keep all) does
// not keep at o.Now, then sweeps what interrupted backups left. Only complete
// backups whose manifest agrees with its ID count and can be deleted; the
// newest and o.Written are always kept. A proven policy counts the backups
// that verified or drilled (Entry.Proven) as retention.KeepProven says. A backup is deleted manifest first,
// so that an interrupted delete leaves objects that are no longer a backup
// rather than a backup with missing objects. It returns the IDs it deleted.
func Prune(ctx context.Context, st storage.Storage, scope Scope, p *retention.Policy, o PruneOptions) ([]string, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Tolerance == 0 {
		o.Tolerance = DefaultTolerance
	}
	if scope.Method == "" {
		// Each method keeps its own count: a logical and a physical backup
		// of the same day never compete for one slot of the policy.
		scope.Method = drivers.MethodLogical
	}
	entries, err := List(ctx, st, scope, o.Trust)
	if err != nil {
		return nil, err
	}
	good, err := countable(entries, o, log)
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", st, err)
	}
	var deleted []string
	var errs []error
	if p != nil {
		deleted, errs = deleteUnkept(ctx, st, good, *p, o, log)
	}
	if n, err := sweep(ctx, st, scope, o); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		log.Info("removed what interrupted backups left", "count", n, "storage", st.String())
	}
	return deleted, errors.Join(errs...)
}

// countable are the entries a policy counts: complete, with a manifest whose
// start time is the time its ID says. It fails with ErrFutureBackups when
// one started more than the tolerance after o.Now.
func countable(entries []Entry, o PruneOptions, log *slog.Logger) ([]Entry, error) {
	var good []Entry
	for _, e := range entries {
		m := e.Manifest
		switch {
		case e.Problem != "":
			log.Warn("a damaged backup is left for inspection", "id", m.ID, "problem", e.Problem)
		case m.Started.UTC().Format(IDFormat) != m.ID:
			log.Warn("a backup whose manifest gives another start time than its ID is left for inspection and not counted by retention",
				"id", m.ID, "started", m.Started)
		case m.Started.After(o.Now.Add(o.Tolerance)):
			return nil, fmt.Errorf("%w: backup %s started at %s, %s after this clock (%s): check the clocks; nothing was deleted",
				ErrFutureBackups, m.ID, m.Started.UTC().Format(time.RFC3339), m.Started.Sub(o.Now).Round(time.Second), o.Now.UTC().Format(time.RFC3339))
		default:
			good = append(good, e)
		}
	}
	return good, nil
}

// deleteUnkept deletes the backups among good that p does not keep.
func deleteUnkept(ctx context.Context, st storage.Storage, good []Entry, p retention.Policy, o PruneOptions, log *slog.Logger) ([]string, []error) {
	times := make([]time.Time, len(good))
	proven := make([]bool, len(good))
	for i, e := range good {
		times[i], proven[i] = e.Manifest.Started, e.Proven()
	}
	keeps := p.KeepProven(times, proven, o.Now)
	if o.Floor != nil {
		for i, k := range o.Floor.KeepProven(times, proven, o.Now) {
			keeps[i] = keeps[i] || k
		}
	}
	if p.Proven {
		logUnproven(good, proven, log)
	}
	var deleted []string
	var errs []error
	for i, keep := range keeps {
		m := good[i].Manifest
		if keep || m.ID == o.Written {
			continue
		}
		if err := deleteBackup(ctx, st, m); err != nil {
			errs = append(errs, fmt.Errorf("delete backup %s: %w", m.ID, err))
			continue
		}
		log.Info("deleted by retention", "id", m.ID, "policy", p.String(), "storage", st.String())
		deleted = append(deleted, m.ID)
	}
	return deleted, errs
}

// logUnproven says, under a proven policy, how many backups wait to be
// proven: they are kept until then, and pile up if nothing verifies or
// drills them.
func logUnproven(good []Entry, proven []bool, log *slog.Logger) {
	waiting, newest := 0, ""
	for i := len(good) - 1; i >= 0; i-- {
		if proven[i] {
			newest = good[i].Manifest.ID
			break
		}
		waiting++
	}
	switch {
	case waiting == 0:
	case newest == "":
		log.Warn("retention counts only proven backups and none is verified or drilled: every backup is kept (schedule remora verify or a drill)", "unproven", waiting)
	default:
		log.Info("retention counts only proven backups: the newer unproven ones are kept until verified or drilled", "unproven", waiting, "newest_proven", newest)
	}
}

// LeftoverAge is how old an unfinished backup must be before it is removed:
// far longer than any backup runs.
const LeftoverAge = 24 * time.Hour

// sweep removes what interrupted backups of the scope's driver left, of
// every method: directories without a manifest whose ID and newest object
// are older than LeftoverAge, and the storage's own leftovers (temporary
// files, unfinished uploads). Keys outside backup directories (the WAL
// archive) are not its to remove.
// Ages are measured by the storage's clock, which stamped them: a local
// clock running fast must not sweep a backup being written right now.
func sweep(ctx context.Context, st storage.Storage, scope Scope, o PruneOptions) (int, error) {
	now := o.StorageNow
	if now.IsZero() {
		now = o.Now
		if c, ok := st.(storage.Clock); ok {
			t, err := c.Now(ctx)
			if err != nil {
				return 0, fmt.Errorf("storage %s: nothing swept: cannot read its clock: %w", st, err)
			}
			now = t
		}
	}
	cutoff := now.Add(-LeftoverAge)
	scope.Method = ""
	prefix := scope.Prefix()
	type dirInfo struct {
		id       string
		keys     []string
		manifest bool
		newest   time.Time
	}
	dirs := map[string]*dirInfo{}
	err := st.List(ctx, prefix, func(o storage.Object) error {
		k, ok := scope.parseKey(o.Key)
		if !ok || k.driver != scope.Driver {
			return nil
		}
		d := dirs[k.dir()]
		if d == nil {
			d = &dirInfo{id: k.id}
			dirs[k.dir()] = d
		}
		d.keys = append(d.keys, o.Key)
		d.manifest = d.manifest || k.name == ManifestName
		if o.ModTime.After(d.newest) {
			d.newest = o.ModTime
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range dirs {
		started, _ := time.Parse(IDFormat, d.id)
		if d.manifest || !started.Before(cutoff) || !d.newest.Before(cutoff) {
			continue
		}
		for _, k := range d.keys {
			if err := st.Delete(ctx, k); err != nil {
				return n, err
			}
			n++
		}
	}
	if sw, ok := st.(storage.Sweeper); ok {
		m, err := sw.Sweep(ctx, prefix, cutoff)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func deleteBackup(ctx context.Context, st storage.Storage, m *Manifest) error {
	dir := m.Dir()
	if err := st.Delete(ctx, m.key(ManifestName)); err != nil {
		return err
	}
	var keys []string
	if err := st.List(ctx, dir, func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if k == m.key(VerifiedName) || k == m.key(DrilledName) {
			continue
		}
		if err := st.Delete(ctx, k); err != nil {
			return err
		}
	}
	if err := st.Delete(ctx, m.key(DrilledName)); err != nil {
		return err
	}
	return st.Delete(ctx, m.key(VerifiedName))
}
