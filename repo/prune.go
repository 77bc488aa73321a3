package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"remora.dev/remora/repo/retention"
	"remora.dev/remora/storage"
)

// Prune deletes the backups of a scope that the policy does not keep at now.
// Only complete backups count and can be deleted; the newest is always kept.
// A backup is deleted manifest first, so that an interrupted delete leaves
// objects that are no longer a backup rather than a backup with missing
// objects. It returns the IDs it deleted.
func Prune(ctx context.Context, st storage.Storage, scope Scope, p retention.Policy, now time.Time, log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	entries, err := List(ctx, st, scope)
	if err != nil {
		return nil, err
	}
	var good []Entry
	var times []time.Time
	for _, e := range entries {
		if e.Problem != "" {
			log.Warn("a damaged backup is left for inspection", "id", e.Manifest.ID, "problem", e.Problem)
			continue
		}
		good = append(good, e)
		times = append(times, e.Manifest.Started)
	}
	var deleted []string
	var errs []error
	for i, keep := range p.Keep(times, now) {
		if keep {
			continue
		}
		m := good[i].Manifest
		if err := deleteBackup(ctx, st, m); err != nil {
			errs = append(errs, fmt.Errorf("delete backup %s: %w", m.ID, err))
			continue
		}
		log.Info("deleted by retention", "id", m.ID, "policy", p.String(), "storage", st.String())
		deleted = append(deleted, m.ID)
	}
	if n, err := sweep(ctx, st, scope, now); err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		log.Info("removed what interrupted backups left", "count", n, "storage", st.String())
	}
	return deleted, errors.Join(errs...)
}

// LeftoverAge is how old an unfinished backup must be before it is removed:
// far longer than any backup runs.
const LeftoverAge = 24 * time.Hour

// sweep removes what interrupted backups of the scope left: directories
// without a manifest whose ID and newest object are older than LeftoverAge,
// and the storage's own leftovers (temporary files, unfinished uploads).
func sweep(ctx context.Context, st storage.Storage, scope Scope, now time.Time) (int, error) {
	cutoff := now.Add(-LeftoverAge)
	prefix := scope.Prefix()
	type dirInfo struct {
		keys     []string
		manifest bool
		newest   time.Time
	}
	dirs := map[string]*dirInfo{}
	err := st.List(ctx, prefix, func(o storage.Object) error {
		driver, id, name, ok := scope.parseKey(o.Key)
		if !ok || driver != scope.Driver {
			return nil
		}
		d := dirs[id]
		if d == nil {
			d = &dirInfo{}
			dirs[id] = d
		}
		d.keys = append(d.keys, o.Key)
		d.manifest = d.manifest || name == ManifestName
		if o.ModTime.After(d.newest) {
			d.newest = o.ModTime
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for id, d := range dirs {
		started, _ := time.Parse(IDFormat, id)
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
		if k == m.key(VerifiedName) {
			continue
		}
		if err := st.Delete(ctx, k); err != nil {
			return err
		}
	}
	return st.Delete(ctx, m.key(VerifiedName))
}
