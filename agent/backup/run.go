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
	"time"

	"filippo.io/age"

	"remora.dev/remora/agent/storage"
	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/version"
)

// Options say what to back up and where.
type Options struct {
	Scope       Scope // Driver must be set
	Driver      drivers.Driver
	Storage     storage.Storage
	Compression string      // "zstd" (default), "gzip" or "none"
	Recipients  *Recipients // encrypt to these age keys; nil: no encryption
	Logger      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Run takes one backup: it checks the storage, asks the driver for its plan,
// streams every object to storage and writes the manifest last. On any
// failure it removes what it wrote and returns the error; nothing it leaves
// behind is ever taken for a backup.
func Run(ctx context.Context, o Options) (*Manifest, error) {
	if o.Scope.Driver == "" {
		return nil, errors.New("backup: no driver given")
	}
	if err := o.Scope.Validate(); err != nil {
		return nil, err
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
	if err := o.Storage.Check(ctx); err != nil {
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
	dir := m.dir()
	if err := mustBeUnused(ctx, o.Storage, dir); err != nil {
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

	var written []string
	fail := func(err error) (*Manifest, error) {
		// The manifest was not written, so these objects are not a backup;
		// remove them now rather than leave them for later cleanup.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for _, k := range written {
			if derr := o.Storage.Delete(cctx, k); derr != nil {
				log.Warn("could not remove an object of the failed backup", "key", k, "error", derr)
			}
		}
		return nil, err
	}

	for _, obj := range plan.Objects {
		rec := ObjectRecord{Object: obj, Key: obj.Name + ext}
		key := dir + rec.Key
		log.Info("dumping", "object", rec.Key, "database", obj.Database)
		t0 := time.Now()
		written = append(written, key)
		if err := putObject(ctx, o.Driver, o.Storage, cod, o.Recipients, key, &rec); err != nil {
			return fail(fmt.Errorf("backup %s: %s: %w", m.ID, rec.Key, err))
		}
		log.Info("stored", "object", rec.Key, "raw_bytes", rec.RawSize, "stored_bytes", rec.Size, "seconds", time.Since(t0).Seconds())
		m.Objects = append(m.Objects, rec)
		if obj.Kind == drivers.KindDatabase || obj.Kind == drivers.KindFiles {
			m.Databases = append(m.Databases, obj.Database)
		}
	}

	// Read-after-write: every object is there with the size that was sent.
	for _, rec := range m.Objects {
		st, err := o.Storage.Stat(ctx, dir+rec.Key)
		if err != nil {
			return fail(fmt.Errorf("backup %s: check %s: %w", m.ID, rec.Key, err))
		}
		if st.Size != rec.Size {
			return fail(fmt.Errorf("backup %s: check %s: storage holds %d bytes, %d were sent", m.ID, rec.Key, st.Size, rec.Size))
		}
	}

	m.Finished = now().UTC()
	m.DurationSeconds = m.Finished.Sub(m.Started).Seconds()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fail(err)
	}
	written = append(written, dir+ManifestName)
	if _, err := o.Storage.Put(ctx, dir+ManifestName, bytes.NewReader(b)); err != nil {
		return fail(fmt.Errorf("backup %s: write manifest: %w", m.ID, err))
	}
	return m, nil
}

// maxWarnings bounds the warnings a manifest keeps.
const maxWarnings = 100

// mustBeUnused refuses to write into a backup directory that holds objects
// (two runs started in the same second).
func mustBeUnused(ctx context.Context, st storage.Storage, dir string) error {
	used := errors.New("used")
	err := st.List(ctx, dir, func(storage.Object) error { return used })
	if errors.Is(err, used) {
		return fmt.Errorf("backup: %s already holds objects: another backup started in the same second; try again", dir)
	}
	return err
}

// putObject streams one object: driver -> compression -> encryption ->
// SHA-256 -> storage.
func putObject(ctx context.Context, drv drivers.Driver, st storage.Storage, cod codec, to *Recipients, key string, rec *ObjectRecord) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	hash := sha256.New()
	var raw, stored counter
	dumpDone := make(chan error, 1)
	go func() {
		err := func() error {
			var sink io.Writer = io.MultiWriter(pw, hash, &stored)
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
		pw.CloseWithError(err) // nil: the reader sees EOF
		dumpDone <- err
	}()
	n, putErr := st.Put(ctx, key, pr)
	if putErr != nil {
		// Stop the dump: its writes now fail and its context ends.
		pr.CloseWithError(putErr)
		cancel()
	}
	dumpErr := <-dumpDone
	switch {
	case dumpErr != nil && (putErr == nil || errors.Is(putErr, dumpErr)):
		return dumpErr // the dump failed first; storage saw its error
	case putErr != nil:
		return putErr // storage failed first; the dump was stopped
	}
	if n != stored.n {
		return fmt.Errorf("storage took %d bytes of %d", n, stored.n)
	}
	rec.Size = stored.n
	rec.RawSize = raw.n
	rec.SHA256 = hex.EncodeToString(hash.Sum(nil))
	return nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
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
