package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"remora.dev/remora/storage"
)

// Entry is a backup found in storage.
type Entry struct {
	Manifest *Manifest
	// Verification is the last verify's result, nil if never verified.
	Verification *Verification
	// Drill is the last restore drill's result, nil if never drilled.
	Drill *Drill
	// Problem, if set, says why the backup cannot be used (an unreadable
	// manifest, a missing or wrong signature); Manifest then holds only what
	// the key tells.
	Problem string
	// Signed: the manifest's signature was checked and is good.
	Signed bool
	// ManifestSHA256 is the SHA-256 of the manifest's bytes.
	ManifestSHA256 string
	err            error // Problem's error: wraps ErrCorrupt or ErrUntrusted
}

// Err is why the backup cannot be used, or nil. It wraps ErrUntrusted for a
// missing or wrong signature, else ErrCorrupt.
func (e *Entry) Err() error {
	if e.Problem == "" {
		return nil
	}
	if e.err != nil {
		return fmt.Errorf("backup %s cannot be used: %w", e.Manifest.ID, e.err)
	}
	return fmt.Errorf("%w: backup %s cannot be used: %s", ErrCorrupt, e.Manifest.ID, e.Problem)
}

// Listing is one backup as `remora list --json` shows it.
type Listing struct {
	ID           string        `json:"id"`
	Driver       string        `json:"driver"`
	Method       string        `json:"method"` // logical or physical
	Time         time.Time     `json:"time"`
	Size         int64         `json:"size"`
	Databases    []string      `json:"databases"`
	Verified     bool          `json:"verified"`
	Signed       bool          `json:"signed"` // checked against a verify key, and good
	Verification *Verification `json:"verification,omitempty"`
	Drilled      bool          `json:"drilled"` // a restore drill passed
	Drill        *Drill        `json:"drill,omitempty"`
	Problem      string        `json:"problem,omitempty"`
	Manifest     *Manifest     `json:"manifest,omitempty"` // absent for a damaged backup
}

// Listing summarises the entry.
func (e Entry) Listing() Listing {
	l := Listing{ID: e.Manifest.ID, Driver: e.Manifest.Driver, Time: e.Manifest.Started, Size: e.Manifest.Size(),
		Databases: e.Manifest.Databases, Verification: e.Verification, Problem: e.Problem, Signed: e.Signed}
	l.Method = e.Manifest.MethodName()
	l.Verified = e.Verification != nil && e.Verification.OK
	l.Drill, l.Drilled = e.Drill, e.Drill != nil && e.Drill.OK
	if e.Problem == "" {
		l.Manifest = e.Manifest
	}
	return l
}

// MaxManifestSize bounds what List reads of a manifest: a real one is a few
// KiB; a larger one (planted in the bucket) is reported, not loaded.
const MaxManifestSize = 1 << 20

// listWorkers is how many manifests List reads at once.
const listWorkers = 8

// ErrNotFound is wrapped by errors about a backup that does not exist.
var ErrNotFound = errors.New("backup not found")

// List finds the backups of a scope (every driver when scope.Driver is
// empty), oldest first. Only directories with a manifest are backups; one
// whose manifest trust does not accept is listed with its Problem.
func List(ctx context.Context, st storage.Storage, scope Scope, trust Trust) ([]Entry, error) {
	if err := scope.Validate(); err != nil {
		return nil, err
	}
	type found struct {
		key               backupKey
		verified, drilled bool
	}
	var dirs []*found
	byDir := map[string]*found{}
	err := st.List(ctx, scope.Prefix(), func(o storage.Object) error {
		k, ok := scope.parseKey(o.Key)
		if !ok || !k.in(scope) || k.name != ManifestName && k.name != VerifiedName && k.name != DrilledName {
			return nil
		}
		if byDir[k.dir()] == nil {
			byDir[k.dir()] = &found{key: k}
		}
		switch k.name {
		case ManifestName:
			dirs = append(dirs, byDir[k.dir()])
		case VerifiedName:
			byDir[k.dir()].verified = true
		default:
			byDir[k.dir()].drilled = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// A fixed pool of readers: a storage with tens of thousands of backups
	// costs that many entries, not that many goroutines.
	entries := make([]Entry, len(dirs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(listWorkers, len(dirs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d := dirs[i]
				entries[i] = readEntry(ctx, st, scope, trust, d.key, d.verified, d.drilled)
			}
		}()
	}
	for i := range dirs {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sortByID(entries)
	return entries, nil
}

// readEntry reads the manifest (and verification record, if there is one)
// of the backup whose key k is, and checks them against trust.
func readEntry(ctx context.Context, st storage.Storage, scope Scope, trust Trust, k backupKey, verified, drilled bool) Entry {
	id := k.id
	want := &Manifest{ID: id, Namespace: scope.Namespace, Workload: scope.Workload, Driver: k.driver, Method: k.method}
	e := Entry{Manifest: want}
	raw, err := readAll(ctx, st, want.key(ManifestName), MaxManifestSize)
	var m *Manifest
	if err == nil {
		m, err = decodeManifest(raw)
	}
	if err == nil {
		e.ManifestSHA256 = sha256Hex(raw)
		err = trust.checkManifest(raw)
	}
	switch {
	case errors.Is(err, ErrUntrusted):
		e.Problem, e.err = err.Error(), err
	case err != nil:
		e.Problem = err.Error()
	case m.ID != id || m.Driver != k.driver || m.Method != k.method || m.Namespace != want.Namespace || m.Workload != want.Workload:
		e.Problem = fmt.Sprintf("the manifest describes %s, not this directory", m.Dir())
	default:
		e.Manifest = m
		e.Signed = trust.Checks() && m.Signature != nil
	}
	if verified && e.Problem == "" {
		e.Verification = readVerification(ctx, st, trust, m, e.ManifestSHA256)
	}
	if drilled && e.Problem == "" {
		e.Drill = readDrill(ctx, st, trust, m, e.ManifestSHA256)
	}
	return e
}

// readVerification reads the record verify left beside manifest m,
// or nil if there is none that can be believed: one that names another
// backup or another manifest (manifestSHA), or, when signatures are checked, one that is
// not signed by a trusted key.
func readVerification(ctx context.Context, st storage.Storage, trust Trust, m *Manifest, manifestSHA string) *Verification {
	b, err := readAll(ctx, st, m.key(VerifiedName), 1<<20)
	if err != nil {
		return nil
	}
	var v Verification
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	if v.Backup != "" && (v.Backup != m.Dir() || v.ManifestSHA256 != manifestSHA) {
		return nil
	}
	if trust.Checks() && (v.Backup == "" || trust.check(verificationDomain, b) != nil) {
		return nil
	}
	return &v
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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
	usable := func(e *Entry) error { return e.Err() }
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
			return nil, fmt.Errorf("backup ID %q exists for several drivers or methods: add --driver or --method", sel.ID)
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
