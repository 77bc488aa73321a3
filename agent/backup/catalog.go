package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"

	"remora.dev/remora/agent/storage"
)

// Entry is a backup found in storage.
type Entry struct {
	Manifest *Manifest
	// Verification is the last verify's result, nil if never verified.
	Verification *Verification
	// Problem, if set, says why the backup cannot be used (an unreadable
	// manifest); Manifest then holds only what the key tells.
	Problem string
}

// ErrNotFound is wrapped by errors about a backup that does not exist.
var ErrNotFound = errors.New("backup not found")

// List finds the backups of a scope (every driver when scope.Driver is
// empty), oldest first. Only directories with a manifest are backups.
func List(ctx context.Context, st storage.Storage, scope Scope) ([]Entry, error) {
	if err := scope.Validate(); err != nil {
		return nil, err
	}
	prefix := scope.Namespace + "/" + scope.Workload + "/"
	if scope.Driver != "" {
		prefix += scope.Driver + "/"
	}
	type found struct {
		driver, id string
		verified   bool
	}
	var dirs []*found
	byDir := map[string]*found{}
	err := st.List(ctx, prefix, func(o storage.Object) error {
		rest := strings.TrimPrefix(o.Key, scope.Namespace+"/"+scope.Workload+"/")
		parts := strings.Split(rest, "/")
		if len(parts) != 3 {
			return nil
		}
		if _, err := time.Parse(IDFormat, parts[1]); err != nil {
			return nil
		}
		k := parts[0] + "/" + parts[1]
		switch parts[2] {
		case ManifestName:
			if byDir[k] == nil {
				byDir[k] = &found{driver: parts[0], id: parts[1]}
				dirs = append(dirs, byDir[k])
			}
		case VerifiedName:
			if byDir[k] == nil {
				byDir[k] = &found{driver: parts[0], id: parts[1]}
			}
			byDir[k].verified = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	entries := make([]Entry, len(dirs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, d := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			s := Scope{scope.Namespace, scope.Workload, d.driver}
			e := Entry{Manifest: &Manifest{ID: d.id, Namespace: s.Namespace, Workload: s.Workload, Driver: d.driver}}
			m, err := readManifest(ctx, st, s.Dir(d.driver, d.id)+ManifestName)
			if err != nil {
				e.Problem = err.Error()
			} else if m.ID != d.id || m.Driver != d.driver || m.Namespace != s.Namespace || m.Workload != s.Workload {
				e.Problem = fmt.Sprintf("the manifest describes %s/%s/%s/%s, not this directory", m.Namespace, m.Workload, m.Driver, m.ID)
			} else {
				e.Manifest = m
			}
			if d.verified {
				var v Verification
				if err := readJSON(ctx, st, s.Dir(d.driver, d.id)+VerifiedName, &v); err == nil {
					e.Verification = &v
				}
			}
			entries[i] = e
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sortByID(entries)
	return entries, nil
}

func readManifest(ctx context.Context, st storage.Storage, key string) (*Manifest, error) {
	b, err := readAll(ctx, st, key, 16<<20)
	if err != nil {
		return nil, err
	}
	return decodeManifest(b)
}

func readJSON(ctx context.Context, st storage.Storage, key string, v any) error {
	b, err := readAll(ctx, st, key, 1<<20)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func readAll(ctx context.Context, st storage.Storage, key string, limit int64) ([]byte, error) {
	r, err := st.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", key, limit)
	}
	return b, nil
}

// Selector picks one backup: by ID, the latest, or the latest taken at or
// before a time.
type Selector struct {
	ID     string
	Latest bool
	Before time.Time
}

// Select picks one usable backup from entries (oldest first).
func Select(entries []Entry, sel Selector) (*Entry, error) {
	usable := func(e *Entry) error {
		if e.Problem != "" {
			return fmt.Errorf("backup %s cannot be used: %s", e.Manifest.ID, e.Problem)
		}
		return nil
	}
	switch {
	case sel.ID != "":
		var match []*Entry
		for i := range entries {
			if entries[i].Manifest.ID == sel.ID {
				match = append(match, &entries[i])
			}
		}
		if len(match) == 0 {
			return nil, fmt.Errorf("%w: no backup with ID %q here: run `remora list` to see the IDs", ErrNotFound, sel.ID)
		}
		if len(match) > 1 {
			return nil, fmt.Errorf("backup ID %q exists for several drivers: add --driver", sel.ID)
		}
		return match[0], usable(match[0])
	case sel.Latest || !sel.Before.IsZero():
		for i := len(entries) - 1; i >= 0; i-- {
			e := &entries[i]
			if e.Problem != "" {
				continue
			}
			if !sel.Before.IsZero() && e.Manifest.Started.After(sel.Before) {
				continue
			}
			return e, nil
		}
		if !sel.Before.IsZero() {
			return nil, fmt.Errorf("%w: no backup taken at or before %s", ErrNotFound, sel.Before.UTC().Format(time.RFC3339))
		}
		return nil, fmt.Errorf("%w: there are no backups here yet", ErrNotFound)
	}
	return nil, errors.New("say which backup: an ID, --latest or --before TIME")
}

// isNotExist reports a missing object.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
