package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/version"
	"remora.dev/remora/repo/retention"
	"remora.dev/remora/storage"
)

// BackupOptions say what to back up and where.
type BackupOptions struct {
	Scope        Scope // Driver must be set
	Driver       drivers.Driver
	Destinations []Destination
	Compression  string      // "zstd" (when empty), "gzip" or "none"
	Recipients   *Recipients // encrypt to these age keys; nil: no encryption
	// Signer signs the manifest; nil leaves it unsigned.
	Signer *SigningKey
	// Trust decides which backups retention counts (see PruneOptions);
	// with none given, the signer's own key.
	Trust Trust
	// RetentionFloor is kept in every destination whatever its policy.
	RetentionFloor *retention.Policy
	Logger         *slog.Logger
	// Progress, if set, follows the run: the object being dumped and the
	// bytes read from the dump tool and written to storage.
	Progress *Progress
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxRate caps the bytes per second read from the database, all
	// objects together (remora.dev/max-rate); 0: no cap.
	MaxRate int64
}

// DefaultCompression is the compression of a backup that names none.
const DefaultCompression = "zstd"

// Progress follows a running backup; it is safe to read while it runs.
type Progress struct {
	mu       sync.Mutex
	object   string
	database string
	raw      atomic.Int64
	stored   atomic.Int64
	// What MaxRate held back: bytes through its bucket, time waited.
	throttledBytes atomic.Int64
	throttledNanos atomic.Int64
}

// ProgressSnapshot is Progress at one moment.
type ProgressSnapshot struct {
	Object      string `json:"object"`
	Database    string `json:"database,omitempty"`
	BytesRead   int64  `json:"bytes_read"`
	BytesStored int64  `json:"bytes_stored"`
	// ThrottledBytes went through the max-rate bucket, which held the
	// dump back for ThrottledSeconds in all.
	ThrottledBytes   int64   `json:"throttled_bytes,omitempty"`
	ThrottledSeconds float64 `json:"throttled_seconds,omitempty"`
}

// Snapshot reads the progress.
func (p *Progress) Snapshot() ProgressSnapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProgressSnapshot{Object: p.object, Database: p.database, BytesRead: p.raw.Load(), BytesStored: p.stored.Load(),
		ThrottledBytes: p.throttledBytes.Load(), ThrottledSeconds: time.Duration(p.throttledNanos.Load()).Seconds()}
}

func (p *Progress) setObject(obj, db string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.object, p.database = obj, db
}

// Result is what a backup achieved.
type Result struct {
	Manifest *Manifest
	Stored   []storage.Storage   // where the backup is complete
	Failed   []DestinationError  // where it is not, and why
	Pruned   map[string][]string // storage -> IDs deleted by retention
	// PruneErrors are why retention failed or stopped in some destination
	// (the backup itself is complete there).
	PruneErrors []error
}

// DestinationError is why one destination did not get the backup.
type DestinationError struct {
	Storage storage.Storage
	Err     error
}

// ErrPartial is wrapped by the error of a backup that is stored in some
// destinations but not all.
var ErrPartial = errors.New("the backup is missing from some destinations")

// dest is a destination during a backup.
type dest struct {
	Destination
	err     error    // set once it failed
	written []string // keys written, removed if it fails
}

// backup is one backup being taken.
type backup struct {
	BackupOptions
	log   *slog.Logger
	now   func() time.Time
	dests []*dest
	m     *Manifest
	chain writeChain
	ext   string // of every object's key: compression, then encryption
	claim string // the name of this run's claim in the backup's directory
}

// Backup takes one backup: it checks every destination, asks the driver for
// its plan, streams every object once to all destinations at the same time,
// and writes the manifest last in each. A destination that fails is dropped
// and cleaned up while the others go on; a failing dump fails them all.
// Nothing left behind by a failure is ever taken for a backup. After
// success, each destination's retention runs.
func Backup(ctx context.Context, o BackupOptions) (*Result, error) {
	b, err := newBackup(o)
	if err != nil {
		return nil, err
	}
	for _, d := range b.dests {
		d.err = d.Storage.Check(ctx)
	}
	if err := allFailed(b.dests); err != nil {
		return nil, err
	}
	plan, err := o.Driver.Plan(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkPlanMethod(b.Scope, plan); err != nil {
		return nil, err
	}
	for _, w := range plan.Warnings {
		b.log.Warn(w)
	}
	b.start(plan)
	if err := b.claimID(ctx); err != nil {
		return nil, err
	}
	if err := b.dumpAll(drivers.WithWarn(ctx, b.warn()), plan.Objects); err != nil {
		b.cleanupAll(ctx)
		return nil, err
	}
	return b.commitAll(ctx)
}

func newBackup(o BackupOptions) (*backup, error) {
	if o.Scope.Driver == "" {
		return nil, errors.New("backup: no driver given")
	}
	if err := o.Scope.Validate(); err != nil {
		return nil, err
	}
	if Logical(o.Scope.Method) {
		o.Scope.Method = drivers.MethodLogical
	}
	if len(o.Destinations) == 0 {
		return nil, errors.New("backup: no destination given")
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression
	}
	cod, err := codecByName(o.Compression)
	if err != nil {
		return nil, err
	}
	b := &backup{BackupOptions: o, log: o.Logger, now: o.Now, ext: cod.ext}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	if o.Recipients != nil {
		b.ext += ageExt
	}
	if o.Signer != nil && !o.Trust.Checks() {
		b.Trust = Trust{Keys: []*VerifyKey{o.Signer.Verify}}
	}
	b.chain = writeChain{cod: cod, to: o.Recipients, progress: o.Progress, log: b.log}
	if o.MaxRate < 0 {
		return nil, fmt.Errorf("backup: max rate %d bytes/s: want 0 (no cap) or more", o.MaxRate)
	}
	if o.MaxRate > 0 {
		b.chain.throttle = newThrottle(o.MaxRate, o.Progress)
	}
	for _, d := range o.Destinations {
		b.dests = append(b.dests, &dest{Destination: d})
	}
	return b, nil
}

// start writes what the manifest knows before the first object.
func (b *backup) start(plan *drivers.Plan) {
	start := b.now().UTC()
	b.m = &Manifest{
		Format: ManifestFormat, ID: start.Format(IDFormat),
		Namespace: b.Scope.Namespace, Workload: b.Scope.Workload, Driver: b.Scope.Driver, Method: manifestMethod(b.Scope.Method),
		Started: start, ServerVersion: plan.ServerVersion, Tools: plan.Tools,
		AgentVersion: version.Version(), Compression: b.chain.cod.name, Warnings: plan.Warnings,
		Databases: []string{},
	}
	if b.Recipients != nil {
		b.m.Encryption = &Encryption{Recipients: b.Recipients.Keys}
	}
}

// manifestMethod is the manifest's word for a method: none for logical.
func manifestMethod(method string) string {
	if Logical(method) {
		return ""
	}
	return method
}

// checkPlanMethod refuses a plan whose objects are not of the scope's
// method: a physical backup holds physical objects only, a logical one none.
func checkPlanMethod(s Scope, plan *drivers.Plan) error {
	for _, o := range plan.Objects {
		if (o.Kind == drivers.KindPhysical) != s.physical() {
			return fmt.Errorf("backup: the driver planned a %s object for a %s backup", o.Kind, s.Method)
		}
	}
	return nil
}

// claimID takes an ID that no other writer holds in any destination. IDs
// are to the second, and writers with no lock between them (two machines on
// the same cron minute, or a run asked for right after a scheduled one) can
// start in the same second: each writes a claim of its own into the
// backup's directory and then lists it; a writer that sees anything but its
// own claim withdraws and tries a later second. Listings are consistent
// after writes (file systems, S3 since 2020), so of two writers at most the
// one that listed first sees itself alone; if both see each other, both
// withdraw, and a random pause sets them apart.
func (b *backup) claimID(ctx context.Context) error {
	var nonce [8]byte
	rand.Read(nonce[:])
	claimName := claimPrefix + hex.EncodeToString(nonce[:])
	for try := 1; ; try++ {
		conflict := false
		for _, d := range live(b.dests) {
			err := claim(ctx, d, b.m.Dir(), claimName)
			switch {
			case errors.Is(err, errDirUsed):
				conflict = true
			case err != nil:
				d.err = err
			}
		}
		if !conflict {
			b.claim = claimName
			return allFailed(b.dests)
		}
		b.cleanupAll(ctx)
		if try == maxClaimTries {
			return fmt.Errorf("backup: no free ID after %d tries: other backups of %s keep starting at the same time", try, b.Scope.Prefix())
		}
		next := b.m.Started.Truncate(time.Second).Add(time.Second)
		pause := time.Until(next) + time.Duration(mrand.Int64N(int64(500*time.Millisecond)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		start := b.now().UTC()
		if start.Before(next) {
			start = next
		}
		b.m.ID, b.m.Started = start.Format(IDFormat), start
		for _, d := range b.dests {
			d.written = nil
		}
	}
}

// maxClaimTries bounds the seconds a run tries before giving up.
const maxClaimTries = 20

// claimPrefix starts the name of a writer's claim on a backup directory.
const claimPrefix = ".claim-"

// claim writes the claim name into dir and checks that dir holds nothing
// else; errDirUsed if it does (the claim is then in d.written, for cleanup).
func claim(ctx context.Context, d *dest, dir, name string) error {
	if err := mustBeUnused(ctx, d.Storage, dir); err != nil {
		return err
	}
	d.written = append(d.written, dir+name)
	_, putErr := d.Storage.Put(ctx, dir+name, bytes.NewReader(nil))
	errOther := errors.New("another writer")
	err := d.Storage.List(ctx, dir, func(o storage.Object) error {
		if o.Key != dir+name {
			return errOther
		}
		return nil
	})
	switch {
	case errors.Is(err, errOther):
		// Some storages also fail the claim itself while another writer
		// changes the directory; either way the ID is not ours.
		return fmt.Errorf("backup: another run claimed %s at the same time: %w", dir, errDirUsed)
	case putErr != nil:
		return fmt.Errorf("backup: claim %s: %w", dir, putErr)
	}
	return err
}

// warn keeps the dump's warnings in the manifest (up to maxWarnings) and logs
// them.
func (b *backup) warn() func(string) {
	var mu sync.Mutex
	return func(msg string) {
		b.log.Warn(msg)
		mu.Lock()
		defer mu.Unlock()
		switch n := len(b.m.Warnings); {
		case n < maxWarnings:
			b.m.Warnings = append(b.m.Warnings, msg)
		case n == maxWarnings:
			b.m.Warnings = append(b.m.Warnings, "more warnings are in the log")
		}
	}
}

// dumpAll streams every object of the plan to the live destinations.
func (b *backup) dumpAll(ctx context.Context, objs []drivers.Object) error {
	for _, obj := range objs {
		rec := ObjectRecord{Object: obj, Key: obj.Name + b.ext}
		b.log.Info("dumping", "object", rec.Key, "database", obj.Database)
		b.Progress.setObject(rec.Key, obj.Database)
		t0 := time.Now()
		err := b.chain.put(ctx, b.Driver, live(b.dests), b.m.key(rec.Key), &rec)
		if err == nil {
			err = allFailed(b.dests)
		}
		if err != nil {
			return fmt.Errorf("backup %s: %s: %w", b.m.ID, rec.Key, err)
		}
		b.log.Info("stored", "object", rec.Key, "raw_bytes", rec.RawSize, "stored_bytes", rec.Size, "seconds", time.Since(t0).Seconds())
		b.m.Objects = append(b.m.Objects, rec)
		if obj.Kind == drivers.KindDatabase || obj.Kind == drivers.KindFiles {
			b.m.Databases = append(b.m.Databases, obj.Database)
		}
	}
	return nil
}

// commitAll writes the manifest in every live destination, then runs each
// one's retention.
func (b *backup) commitAll(ctx context.Context) (*Result, error) {
	b.m.Finished = b.now().UTC()
	b.m.DurationSeconds = b.m.Finished.Sub(b.m.Started).Seconds()
	manifest, err := b.manifestBytes()
	if err != nil {
		b.cleanupAll(ctx)
		return nil, err
	}
	res := &Result{Manifest: b.m, Pruned: map[string][]string{}}
	for _, d := range live(b.dests) {
		d.err = commit(ctx, d, b.m, manifest)
		if d.err == nil {
			// The manifest holds the directory now; the claim has done its work.
			if err := d.Storage.Delete(ctx, b.m.key(b.claim)); err != nil {
				b.log.Warn("could not remove the run's claim", "storage", d.Storage.String(), "key", b.m.key(b.claim), "error", err)
			}
		}
	}
	for _, d := range b.dests {
		if d.err != nil {
			cleanup(ctx, d, b.log)
			res.Failed = append(res.Failed, DestinationError{Storage: d.Storage, Err: d.err})
			continue
		}
		res.Stored = append(res.Stored, d.Storage)
		// Retention, and the sweep of what killed runs left, whatever the
		// policy (nil keeps every backup).
		deleted, err := Prune(ctx, d.Storage, b.Scope, d.Retention, PruneOptions{Now: b.now(), Logger: b.log, Written: b.m.ID, Trust: b.Trust, Floor: b.RetentionFloor})
		if err != nil {
			b.log.Error("retention failed", "storage", d.Storage.String(), "error", err)
			res.PruneErrors = append(res.PruneErrors, err)
		}
		res.Pruned[d.Storage.String()] = deleted
	}
	if len(res.Stored) == 0 {
		return nil, allFailed(b.dests)
	}
	if len(res.Failed) > 0 {
		var errs []error
		for _, f := range res.Failed {
			errs = append(errs, f.Err)
		}
		return res, fmt.Errorf("%w: %w", ErrPartial, errors.Join(errs...))
	}
	return res, nil
}

// manifestBytes is the manifest as stored: indented JSON, signed if there is
// a signer.
func (b *backup) manifestBytes() ([]byte, error) {
	doc, err := json.MarshalIndent(b.m, "", "  ")
	if err != nil || b.Signer == nil {
		return doc, err
	}
	doc, err = b.Signer.sign(manifestDomain, doc)
	if err != nil {
		return nil, err
	}
	// The manifest Result returns carries the signature as stored.
	return doc, json.Unmarshal(doc, b.m)
}

// commit checks that every object is there with the size that was sent
// (read-after-write), then writes the manifest: from then on it is a backup.
func commit(ctx context.Context, d *dest, m *Manifest, manifest []byte) error {
	for _, rec := range m.Objects {
		st, err := d.Storage.Stat(ctx, m.key(rec.Key))
		if err != nil {
			return fmt.Errorf("backup %s: check %s: %w", m.ID, rec.Key, err)
		}
		if st.Size != rec.Size {
			return fmt.Errorf("backup %s: check %s in %s: %d bytes stored, %d sent", m.ID, rec.Key, d.Storage, st.Size, rec.Size)
		}
	}
	d.written = append(d.written, m.key(ManifestName))
	if _, err := d.Storage.Put(ctx, m.key(ManifestName), bytes.NewReader(manifest)); err != nil {
		return fmt.Errorf("backup %s: write manifest: %w", m.ID, err)
	}
	return nil
}

func (b *backup) cleanupAll(ctx context.Context) {
	for _, d := range b.dests {
		cleanup(ctx, d, b.log)
	}
}

// cleanup removes what a failed destination got: without its manifest it is
// not a backup, and its objects need not wait for the sweep.
func cleanup(ctx context.Context, d *dest, log *slog.Logger) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, k := range d.written {
		if err := d.Storage.Delete(cctx, k); err != nil {
			log.Warn("could not remove an object of the failed backup", "storage", d.Storage.String(), "key", k, "error", err)
		}
	}
	d.written = nil
}

func live(dests []*dest) []*dest {
	var out []*dest
	for _, d := range dests {
		if d.err == nil {
			out = append(out, d)
		}
	}
	return out
}

// allFailed is the joined error when no destination is left, else nil.
func allFailed(dests []*dest) error {
	var errs []error
	for _, d := range dests {
		if d.err == nil {
			return nil
		}
		errs = append(errs, d.err)
	}
	return errors.Join(errs...)
}

// maxWarnings bounds the warnings a manifest keeps.
const maxWarnings = 100

// errDirUsed: a backup directory holds objects already (two backups started
// in the same second).
var errDirUsed = errors.New("another backup started in the same second")

// mustBeUnused refuses to write into a backup directory that holds objects.
func mustBeUnused(ctx context.Context, st storage.Storage, dir string) error {
	errFound := errors.New("found")
	err := st.List(ctx, dir, func(storage.Object) error { return errFound })
	if errors.Is(err, errFound) {
		return fmt.Errorf("backup: %s already holds objects: %w", dir, errDirUsed)
	}
	return err
}

// sortByID orders entries oldest first.
func sortByID(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return strings.Compare(a.Manifest.ID, b.Manifest.ID) })
}
