package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"

	"remora.dev/remora/agent/retention"
	"remora.dev/remora/agent/storage"
	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/version"
)

// Destination is one place a backup goes, with its own retention.
type Destination struct {
	Storage   storage.Storage
	Retention *retention.Policy // applied after a successful backup; nil keeps everything
}

// Options say what to back up and where.
type Options struct {
	Scope        Scope // Driver must be set
	Driver       drivers.Driver
	Destinations []Destination
	Compression  string      // "zstd" (default), "gzip" or "none"
	Recipients   *Recipients // encrypt to these age keys; nil: no encryption
	Logger       *slog.Logger
	// Progress, if set, follows the run: the object being dumped and the
	// bytes read from the dump tool and written to storage.
	Progress *Progress
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Progress follows a running backup; it is safe to read while it runs.
type Progress struct {
	mu       sync.Mutex
	object   string
	database string
	raw      atomic.Int64
	stored   atomic.Int64
}

// ProgressSnapshot is Progress at one moment.
type ProgressSnapshot struct {
	Object      string `json:"object"`
	Database    string `json:"database,omitempty"`
	BytesRead   int64  `json:"bytes_read"`
	BytesStored int64  `json:"bytes_stored"`
}

// Snapshot reads the progress.
func (p *Progress) Snapshot() ProgressSnapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProgressSnapshot{Object: p.object, Database: p.database, BytesRead: p.raw.Load(), BytesStored: p.stored.Load()}
}

func (p *Progress) setObject(obj, db string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.object, p.database = obj, db
}

// Result is what a run achieved.
type Result struct {
	Manifest *Manifest
	Stored   []storage.Storage   // where the backup is complete
	Failed   []DestinationError  // where it is not, and why
	Pruned   map[string][]string // storage -> IDs deleted by retention
}

// DestinationError is why one destination did not get the backup.
type DestinationError struct {
	Storage storage.Storage
	Err     error
}

// ErrPartial is wrapped by the error of a run that stored the backup in some
// destinations but not all.
var ErrPartial = errors.New("the backup is missing from some destinations")

// dest is a destination during a run.
type dest struct {
	Destination
	err     error    // set once it failed
	written []string // keys written, removed if it fails
}

// Run takes one backup: it checks every destination, asks the driver for its
// plan, streams every object once to all destinations at the same time, and
// writes the manifest last in each. A destination that fails is dropped and
// cleaned up while the others go on; a failing dump fails them all. Nothing
// left behind by a failure is ever taken for a backup. After success,
// each destination's retention runs.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Scope.Driver == "" {
		return nil, errors.New("backup: no driver given")
	}
	if err := o.Scope.Validate(); err != nil {
		return nil, err
	}
	if len(o.Destinations) == 0 {
		return nil, errors.New("backup: no destination given")
	}
	if o.Compression == "" {
		o.Compression = "zstd"
	}
	cod, err := codecByName(o.Compression)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	dests := make([]*dest, len(o.Destinations))
	for i, d := range o.Destinations {
		dests[i] = &dest{Destination: d}
		dests[i].err = d.Storage.Check(ctx)
	}
	if err := allFailed(dests); err != nil {
		return nil, err
	}
	plan, err := o.Driver.Plan(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range plan.Warnings {
		log.Warn(w)
	}

	start := now().UTC()
	m := &Manifest{
		Format: ManifestFormat, ID: start.Format(IDFormat),
		Namespace: o.Scope.Namespace, Workload: o.Scope.Workload, Driver: o.Scope.Driver,
		Started: start, ServerVersion: plan.ServerVersion, Tools: plan.Tools,
		AgentVersion: version.Version(), Compression: cod.name, Warnings: plan.Warnings,
		Databases: []string{},
	}
	ext := cod.ext
	if o.Recipients != nil {
		m.Encryption = &Encryption{Recipients: o.Recipients.Keys}
		ext += ageExt
	}
	// IDs are to the second: a run that starts in the same second as the
	// one before it (a backup asked for right after a scheduled one) takes
	// the next second.
	dir := m.dir()
	for try := 1; ; try++ {
		used := false
		for _, d := range live(dests) {
			if err := mustBeUnused(ctx, d.Storage, dir); errors.Is(err, errDirUsed) && try < 4 {
				used = true
			} else if err != nil {
				d.err = err
			}
		}
		if !used {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Until(start.Truncate(time.Second).Add(time.Second))):
		}
		start = now().UTC()
		if !start.After(m.Started.Truncate(time.Second).Add(time.Second - 1)) {
			start = m.Started.Truncate(time.Second).Add(time.Second)
		}
		m.ID, m.Started = start.Format(IDFormat), start
		dir = m.dir()
	}
	if err := allFailed(dests); err != nil {
		return nil, err
	}
	var warnMu sync.Mutex
	ctx = drivers.WithWarn(ctx, func(msg string) {
		log.Warn(msg)
		warnMu.Lock()
		defer warnMu.Unlock()
		switch n := len(m.Warnings); {
		case n < maxWarnings:
			m.Warnings = append(m.Warnings, msg)
		case n == maxWarnings:
			m.Warnings = append(m.Warnings, "more warnings are in the log")
		}
	})

	fail := func(err error) (*Result, error) {
		for _, d := range dests {
			cleanup(ctx, d, log)
		}
		return nil, err
	}

	for _, obj := range plan.Objects {
		rec := ObjectRecord{Object: obj, Key: obj.Name + ext}
		log.Info("dumping", "object", rec.Key, "database", obj.Database)
		o.Progress.setObject(rec.Key, obj.Database)
		t0 := time.Now()
		if err := putObject(ctx, o.Driver, live(dests), cod, o.Recipients, dir+rec.Key, &rec, o.Progress, log); err != nil {
			return fail(fmt.Errorf("backup %s: %s: %w", m.ID, rec.Key, err))
		}
		if err := allFailed(dests); err != nil {
			return fail(fmt.Errorf("backup %s: %s: %w", m.ID, rec.Key, err))
		}
		log.Info("stored", "object", rec.Key, "raw_bytes", rec.RawSize, "stored_bytes", rec.Size, "seconds", time.Since(t0).Seconds())
		m.Objects = append(m.Objects, rec)
		if obj.Kind == drivers.KindDatabase || obj.Kind == drivers.KindFiles {
			m.Databases = append(m.Databases, obj.Database)
		}
	}

	m.Finished = now().UTC()
	m.DurationSeconds = m.Finished.Sub(m.Started).Seconds()
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fail(err)
	}
	res := &Result{Manifest: m, Pruned: map[string][]string{}}
	for _, d := range live(dests) {
		if d.err = commit(ctx, d, dir, m, manifest); d.err != nil {
			cleanup(ctx, d, log)
		}
	}
	for _, d := range dests {
		if d.err != nil {
			cleanup(ctx, d, log)
			res.Failed = append(res.Failed, DestinationError{Storage: d.Storage, Err: d.err})
			continue
		}
		res.Stored = append(res.Stored, d.Storage)
		if d.Retention != nil {
			deleted, err := Prune(ctx, d.Storage, o.Scope, *d.Retention, now(), log)
			if err != nil {
				log.Error("retention failed", "storage", d.Storage.String(), "error", err)
			}
			res.Pruned[d.Storage.String()] = deleted
		}
	}
	if len(res.Stored) == 0 {
		return nil, allFailed(dests)
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

// commit checks that every object is there with the size that was sent
// (read-after-write), then writes the manifest: from then on it is a backup.
func commit(ctx context.Context, d *dest, dir string, m *Manifest, manifest []byte) error {
	for _, rec := range m.Objects {
		st, err := d.Storage.Stat(ctx, dir+rec.Key)
		if err != nil {
			return fmt.Errorf("backup %s: check %s: %w", m.ID, rec.Key, err)
		}
		if st.Size != rec.Size {
			return fmt.Errorf("backup %s: check %s in %s: %d bytes stored, %d sent", m.ID, rec.Key, d.Storage, st.Size, rec.Size)
		}
	}
	d.written = append(d.written, dir+ManifestName)
	if _, err := d.Storage.Put(ctx, dir+ManifestName, bytes.NewReader(manifest)); err != nil {
		return fmt.Errorf("backup %s: write manifest: %w", m.ID, err)
	}
	return nil
}

// cleanup removes what a failed destination got: without its manifest it is
// not a backup, and its objects need not wait for later cleanup.
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

// errDirUsed: a backup directory holds objects already (two runs started in
// the same second).
var errDirUsed = errors.New("another backup started in the same second")

// mustBeUnused refuses to write into a backup directory that holds objects.
func mustBeUnused(ctx context.Context, st storage.Storage, dir string) error {
	used := errors.New("used")
	err := st.List(ctx, dir, func(storage.Object) error { return used })
	if errors.Is(err, used) {
		return fmt.Errorf("backup: %s already holds objects: %w", dir, errDirUsed)
	}
	return err
}

// putObject streams one object to every live destination at once:
// driver -> compression -> encryption -> SHA-256 -> storage. A destination
// whose Put fails is marked failed and dropped; the dump goes on for the
// others. A failed dump is returned.
func putObject(ctx context.Context, drv drivers.Driver, dests []*dest, cod codec, to *Recipients, key string, rec *ObjectRecord, prog *Progress, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type branch struct {
		d      *dest
		pr     *io.PipeReader
		pw     *io.PipeWriter
		putErr error
		n      int64
	}
	branches := make([]*branch, len(dests))
	var wg sync.WaitGroup
	for i, d := range dests {
		b := &branch{d: d}
		b.pr, b.pw = io.Pipe()
		branches[i] = b
		d.written = append(d.written, key)
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.n, b.putErr = d.Storage.Put(ctx, key, b.pr)
			// Unblock the fan-out if this destination stopped reading.
			b.pr.CloseWithError(errDestinationFailed)
		}()
	}
	fan := &fanOut{branches: make([]*io.PipeWriter, len(branches))}
	for i, b := range branches {
		fan.branches[i] = b.pw
	}

	hash := sha256.New()
	var raw, stored counter
	if prog != nil {
		raw.total, stored.total = &prog.raw, &prog.stored
	}
	dumpErr := func() error {
		var sink io.Writer = io.MultiWriter(hash, &stored, fan)
		var enc io.WriteCloser = nopWriteCloser{sink}
		if to != nil {
			var err error
			if enc, err = age.Encrypt(sink, to.list...); err != nil {
				return err
			}
		}
		zw, err := cod.newWriter(enc)
		if err != nil {
			return err
		}
		if err := drv.Dump(ctx, rec.Object, io.MultiWriter(zw, &raw)); err != nil {
			zw.Close()
			return err
		}
		// Innermost first: the compressor flushes into the encryption,
		// which writes its last chunk.
		if err := zw.Close(); err != nil {
			return err
		}
		return enc.Close()
	}()
	for _, b := range branches {
		b.pw.CloseWithError(dumpErr) // nil: the reader sees EOF
	}
	wg.Wait()
	if dumpErr != nil {
		// The dump failed, or every destination did (then their errors say why).
		for _, b := range branches {
			if b.putErr != nil && !errors.Is(b.putErr, dumpErr) {
				b.d.err = b.putErr
			}
		}
		if err := allFailed(dests); err != nil {
			return err
		}
		return dumpErr
	}
	for _, b := range branches {
		switch {
		case b.putErr != nil:
			b.d.err = b.putErr
		case b.n != stored.n:
			b.d.err = fmt.Errorf("storage %s took %d bytes of %d", b.d.Storage, b.n, stored.n)
		default:
			continue
		}
		log.Error("a destination failed; the others go on", "storage", b.d.Storage.String(), "error", b.d.err)
	}
	rec.Size = stored.n
	rec.RawSize = raw.n
	rec.SHA256 = hex.EncodeToString(hash.Sum(nil))
	return nil
}

var (
	errDestinationFailed     = errors.New("destination failed")
	errAllDestinationsFailed = errors.New("every destination failed")
)

// fanOut writes to every branch still accepting data. A branch whose write
// fails is dropped; when none is left, the dump is stopped.
type fanOut struct {
	branches []*io.PipeWriter // nil once dropped
}

func (f *fanOut) Write(p []byte) (int, error) {
	alive := 0
	for i, w := range f.branches {
		if w == nil {
			continue
		}
		if _, err := w.Write(p); err != nil {
			f.branches[i] = nil
			continue
		}
		alive++
	}
	if alive == 0 {
		return 0, errAllDestinationsFailed
	}
	return len(p), nil
}

// counter counts bytes, and adds them to total if set.
type counter struct {
	n     int64
	total *atomic.Int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.total != nil {
		c.total.Add(int64(len(p)))
	}
	return len(p), nil
}

// sortByID orders manifests oldest first.
func sortByID(ms []Entry) {
	slices.SortFunc(ms, func(a, b Entry) int {
		switch {
		case a.Manifest.ID < b.Manifest.ID:
			return -1
		case a.Manifest.ID > b.Manifest.ID:
			return 1
		}
		return 0
	})
}
