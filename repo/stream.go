package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"

	"filippo.io/age"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/prio"
	"remora.dev/remora/storage"
)

// The two chains every object of a backup passes through, side by side.
//
// Write (backup):
//
//	driver.Dump → compression → encryption → SHA-256 + count → fan-out → one pipe per destination → Storage.Put
//
// Read (verify, restore):
//
//	Storage.Open → size + SHA-256 check (the end held back until it matched) → decryption → decompression → raw size bound → driver.Restore or a count
//
// The checksum covers the stored bytes, so verify checks an encrypted backup
// without its key; with the key it also reads through to the raw size.

// writeChain is the write chain of one object.
type writeChain struct {
	cod      codec
	to       *Recipients // nil: no encryption
	progress *Progress   // nil: not followed
	throttle *throttle   // nil: no max rate
	log      *slog.Logger
}

// put streams one object from the driver to every live destination at once.
// A destination whose Put fails is marked failed and dropped; the dump goes
// on for the others. A failed dump is returned. rec gets the sizes and the
// checksum of what was stored.
func (c writeChain) put(ctx context.Context, drv drivers.Driver, dests []*dest, key string, rec *ObjectRecord) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	puts := startPuts(ctx, dests, key)
	hash := sha256.New()
	var raw, stored counter
	if c.progress != nil {
		raw.total, stored.total = &c.progress.raw, &c.progress.stored
	}
	meta, dumpErr := c.dump(ctx, drv, rec.Object, io.MultiWriter(hash, &stored, puts.fan()), &raw)
	puts.finish(dumpErr)
	if dumpErr != nil {
		// The dump failed, or every destination did (then their errors say why).
		for _, b := range puts.branches {
			if b.err != nil && !errors.Is(b.err, dumpErr) {
				b.d.err = b.err
			}
		}
		if err := allFailed(dests); err != nil {
			return err
		}
		return dumpErr
	}
	for _, b := range puts.branches {
		switch {
		case b.err != nil:
			b.d.err = b.err
		case b.n != stored.n:
			b.d.err = fmt.Errorf("storage %s took %d bytes of %d", b.d.Storage, b.n, stored.n)
		default:
			continue
		}
		c.log.Error("a destination failed; the others go on", "storage", b.d.Storage.String(), "error", b.d.err)
	}
	rec.Size, rec.RawSize, rec.SHA256 = stored.n, raw.n, hex.EncodeToString(hash.Sum(nil))
	rec.Meta = mergeMeta(rec.Meta, meta)
	return nil
}

// dump runs the driver's dump into sink through compression and encryption,
// counting the raw bytes, and closes the stages innermost first: the
// compressor flushes into the encryption, which writes its last chunk. It
// returns the Meta the dump learnt (drivers.MetaDumper).
//
// It all runs at ctx's priority (remora.dev/priority): the driver's dump and
// its tools, the compressor's goroutines and the encryption, which runs on
// whichever of them writes the compressed stream.
func (c writeChain) dump(ctx context.Context, drv drivers.Driver, obj drivers.Object, sink io.Writer, raw *counter) (meta map[string]string, err error) {
	prio.Run(ctx, func() { meta, err = c.dumpHere(ctx, drv, obj, sink, raw) })
	return meta, err
}

func (c writeChain) dumpHere(ctx context.Context, drv drivers.Driver, obj drivers.Object, sink io.Writer, raw *counter) (map[string]string, error) {
	var enc io.WriteCloser = nopWriteCloser{sink}
	if c.to != nil {
		var err error
		if enc, err = age.Encrypt(sink, c.to.list...); err != nil {
			return nil, err
		}
	}
	var wo writerOptions
	if prio.Lowered(ctx) {
		wo.goFn = func(fn func()) { prio.Go(ctx, fn) }
	}
	zw, err := c.cod.newWriter(enc, wo)
	if err != nil {
		return nil, err
	}
	var in io.Writer = io.MultiWriter(zw, raw)
	if c.throttle != nil {
		in = c.throttle.writer(ctx, in)
	}
	meta, err := drivers.DumpMeta(ctx, drv, obj, in)
	if err != nil {
		zw.Close()
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return meta, enc.Close()
}

// mergeMeta adds what a dump learnt to the Meta the plan gave; the dump's
// word wins.
func mergeMeta(plan, learnt map[string]string) map[string]string {
	if len(learnt) == 0 {
		return plan
	}
	out := make(map[string]string, len(plan)+len(learnt))
	for k, v := range plan {
		out[k] = v
	}
	for k, v := range learnt {
		out[k] = v
	}
	return out
}

// puts are the uploads of one object, one per destination, each reading a
// pipe.
type puts struct {
	branches []*branch
	wg       sync.WaitGroup
}

type branch struct {
	d   *dest
	pw  *io.PipeWriter
	n   int64 // bytes Put took
	err error // Put's error
}

func startPuts(ctx context.Context, dests []*dest, key string) *puts {
	p := &puts{}
	for _, d := range dests {
		pr, pw := io.Pipe()
		b := &branch{d: d, pw: pw}
		p.branches = append(p.branches, b)
		d.written = append(d.written, key)
		p.wg.Add(1)
		// At the backup's priority: what a backend does on this goroutine
		// (hashing, signing, parts) is the backup's work.
		prio.Go(ctx, func() {
			defer p.wg.Done()
			b.n, b.err = d.Storage.Put(ctx, key, pr)
			// Unblock the fan-out if this destination stopped reading.
			pr.CloseWithError(errDestinationFailed)
		})
	}
	return p
}

// fan is the writer that feeds every pipe.
func (p *puts) fan() *fanOut {
	f := &fanOut{branches: make([]*io.PipeWriter, len(p.branches))}
	for i, b := range p.branches {
		f.branches[i] = b.pw
	}
	return f
}

// finish ends every pipe with the dump's error (nil: the reader sees EOF)
// and waits for the uploads.
func (p *puts) finish(dumpErr error) {
	for _, b := range p.branches {
		b.pw.CloseWithError(dumpErr)
	}
	p.wg.Wait()
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

// objectReader is the read chain of one object. Read gives the raw dump,
// or with deep false (an encrypted backup read without its key) the stored
// bytes, of which only the checksum is checked.
type objectReader struct {
	rec     ObjectRecord
	stored  io.ReadCloser
	checked *checkedReader
	src     io.Reader     // what Read reads: the end of the chain
	dec     io.ReadCloser // the decompressor, closed by Close
	deep    bool
	// setupErr is why decryption or decompression could not start; Read
	// returns it.
	setupErr error
	// decodeErr is the first error decryption or decompression returned.
	decodeErr error
}

// openObject opens the read chain of rec. hold is how much of the stored
// bytes are held back until the whole object matched its checksum (see
// checkedReader). A missing object is corrupt; an object that cannot be
// decrypted or decompressed is reported by Read and explain.
func openObject(ctx context.Context, st storage.Storage, m *Manifest, ids *Identities, rec ObjectRecord, hold int, deep bool) (*objectReader, error) {
	r, err := st.Open(ctx, m.key(rec.Key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing from storage", ErrCorrupt, rec.Key)
	}
	if err != nil {
		return nil, err
	}
	o := &objectReader{rec: rec, stored: r, checked: newCheckedReader(r, rec, hold), deep: deep}
	o.src = o.checked
	if !deep {
		return o, nil
	}
	plain, err := decrypter(m, ids, o.checked)
	if err == nil {
		var cod codec
		if cod, err = codecByName(m.Compression); err == nil {
			o.dec, err = cod.newReader(plain)
		}
	}
	if err == nil && rec.RawSize < 0 {
		err = fmt.Errorf("%w: the manifest records a raw size of %d bytes for %s", ErrCorrupt, rec.RawSize, rec.Key)
	}
	if err != nil {
		o.setupErr, o.decodeErr = err, err
		o.src = errReader{err}
		return o, nil
	}
	o.src = &rawBound{r: o.dec, key: rec.Key, size: rec.RawSize}
	return o, nil
}

func (o *objectReader) Read(p []byte) (int, error) {
	n, err := o.src.Read(p)
	if err != nil && err != io.EOF && o.deep && o.decodeErr == nil && o.checked.err == nil {
		o.decodeErr = err
	}
	return n, err
}

// explain says why reading the chain (or the tool reading it) failed with
// err: the stored bytes do not match their checksum, the backup is encrypted
// to a key not given, the bytes match but do not decrypt or decompress, or
// err itself.
func (o *objectReader) explain(err error) error {
	switch {
	case errors.Is(o.checked.err, ErrCorrupt):
		return o.checked.err
	case o.checked.err != nil:
		return fmt.Errorf("read %s: %w", o.rec.Key, o.checked.err)
	case errors.Is(o.decodeErr, ErrNoIdentity), errors.Is(o.decodeErr, ErrUntrusted), errors.Is(o.decodeErr, ErrCorrupt):
		return o.decodeErr
	case o.decodeErr != nil:
		return fmt.Errorf("%w: %s matches its checksum but does not decrypt or decompress: %v", ErrCorrupt, o.rec.Key, o.decodeErr)
	}
	return err
}

// finish reads what the consumer left of the stored bytes, so that the
// checksum has seen every one, and reports a mismatch.
func (o *objectReader) finish() error {
	if o.checked.eof {
		return nil
	}
	if _, err := io.Copy(io.Discard, o.checked); err != nil {
		return o.explain(err)
	}
	return nil
}

func (o *objectReader) Close() error {
	if o.dec != nil {
		o.dec.Close()
	}
	return o.stored.Close()
}

// rawBound passes the decompressed stream through, up to the raw size the
// manifest records. A stream that goes on past it (a compression bomb: a few
// stored bytes that expand without end) stops there with an error wrapping
// ErrCorrupt, without a byte more for the consumer, so a restore cannot
// fill a disk nor verify decompress on; one that ends short of it gives that
// error where the end would be, so a tool loading it cannot commit.
type rawBound struct {
	r    io.Reader
	key  string
	size int64 // the raw size in the manifest
	n    int64 // bytes given out
	err  error
}

func (b *rawBound) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if left := b.size - b.n; int64(len(p)) > left+1 {
		p = p[:left+1] // one byte past the end tells a stream that goes on
	}
	n, err := b.r.Read(p)
	switch got := b.n + int64(n); {
	case got > b.size:
		n = int(b.size - b.n)
		b.err = fmt.Errorf("%w: %s decompresses to more than the %d bytes in the manifest", ErrCorrupt, b.key, b.size)
		err = b.err
	case err == io.EOF && got < b.size:
		b.err = fmt.Errorf("%w: %s decompresses to %d bytes, the manifest says %d", ErrCorrupt, b.key, got, b.size)
		err = b.err
	}
	b.n += int64(n)
	return n, err
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// checkedReader passes an object's stored bytes through, computing their
// SHA-256. It holds back the last hold bytes until the end of the object has
// been read and matched the manifest: a reader of a corrupt or truncated
// object gets an error wrapping ErrCorrupt before it has seen the whole
// stream, so a tool loading it cannot complete and commit.
type checkedReader struct {
	src  io.Reader
	o    ObjectRecord
	hash hash.Hash
	n    int64
	hold int
	buf  []byte // buf[r:w] was read from src and not yet given out
	r, w int
	eof  bool // src is at its end and matched
	err  error
}

func newCheckedReader(src io.Reader, o ObjectRecord, hold int) *checkedReader {
	return &checkedReader{src: src, o: o, hash: sha256.New(), hold: hold, buf: make([]byte, hold+64<<10)}
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for !c.eof && c.w-c.r <= c.hold {
		if c.w == len(c.buf) {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		n, err := c.src.Read(c.buf[c.w:])
		c.hash.Write(c.buf[c.w : c.w+n])
		c.w += n
		c.n += int64(n)
		if c.n > c.o.Size {
			c.err = fmt.Errorf("%w: %s is longer than the %d bytes in the manifest", ErrCorrupt, c.o.Key, c.o.Size)
			return 0, c.err
		}
		if err == io.EOF {
			if c.n != c.o.Size {
				c.err = fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrCorrupt, c.o.Key, c.n, c.o.Size)
				return 0, c.err
			}
			if got := hex.EncodeToString(c.hash.Sum(nil)); got != c.o.SHA256 {
				c.err = fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", ErrCorrupt, c.o.Key, got, c.o.SHA256)
				return 0, c.err
			}
			c.eof = true
		} else if err != nil {
			c.err = err
			return 0, err
		}
	}
	avail := c.w - c.r
	if !c.eof {
		avail -= c.hold
	}
	if avail == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.buf[c.r:c.r+avail])
	c.r += n
	return n, nil
}
