package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"remora.dev/remora/storage"
)

// The log archive: the files a database writes continuously (PostgreSQL's
// WAL segments and timeline history files), each stored as soon as it is
// complete, and the newest incomplete one stored as a partial at least every
// flush interval. Its keys, beside the scope's backups:
//
//	<namespace>/<workload>/<driver>/wal/<system>/<series>/<name><.zst|.gz>[.age]   the file
//	<namespace>/<workload>/<driver>/wal/<system>/<series>/<name>.json              its record, written after it
//
// <system> is the database cluster's identifier (PostgreSQL's system
// identifier, in decimal): a cluster made anew (initdb on an empty volume)
// starts its own archive and never overwrites the old one's files, whose
// names it reuses. <series> is the PostgreSQL timeline (8 hex digits). <name> is the file's
// own name (000000010000000000000003, 00000002.history), or for a partial
// the segment's name, ".partial." and the number of bytes it holds (8 hex
// digits), so that each flush writes new keys and never overwrites one.
// A file without its record does not exist for anything that reads the
// archive; the catalog of backups never looks below wal/ (its names are no
// backup IDs), and the archive's own retention removes what it no longer
// needs (wal.go).

// LogDir is the directory of PostgreSQL's log archive (its WAL) under the
// driver's prefix; BinlogDir is MySQL's and MariaDB's (their binary logs).
const (
	LogDir    = "wal"
	BinlogDir = "binlog"
)

// A MySQL or MariaDB binary log is archived in pieces, each a run of the
// file's bytes that ends where the stream was flushed:
//
//	<namespace>/<workload>/mysql/binlog/<system>/<file>.<created>/<start>-<end>[.last]<.zst|.gz>[.age]
//
// <system> is the server's identity (MySQL's server_uuid, MariaDB's
// server_id), <file> the binary log's own name (mysql-bin.000042) and
// <created> the time the server opened it (8 hex digits of Unix seconds,
// from its format description): a server made anew reuses the file names
// but never the keys of the old one's files. <start> and <end> are byte
// offsets in the file (12 hex digits each); ".last" marks the piece after
// which the stream moved on to the next file, so a file whose end was never
// stored shows as a gap. Pieces never overwrite each other: a resumed
// stream writes a piece that begins where the archive ended.

// logKind is how one driver's log archive names its files.
type logKind struct {
	dir                  string
	system, series, name *regexp.Regexp
}

var (
	walKind    = logKind{dir: LogDir, system: systemRE, series: seriesRE, name: logNameRE}
	binlogKind = logKind{dir: BinlogDir, system: binlogSystemRE, series: BinlogSeriesRE, name: binlogPieceRE}
)

// logKindOf is the log archive of a driver: the binary logs for mysql, the
// WAL for every other.
func logKindOf(driver string) logKind {
	if driver == "mysql" {
		return binlogKind
	}
	return walKind
}

// logRecordFormat is the version of a log record's layout.
const logRecordFormat = 1

// logDomain is what a log record's signature is made for.
const logDomain = "remora log file v1"

// maxLogFile bounds what one archived file may hold: a WAL segment is at
// most 1 GiB (wal_segment_size's limit). Files are held in memory whole
// while they are stored and fetched, so the bound is also the memory one
// file may take; the default 16 MiB segment takes 16 MiB plus its
// compressed copy.
const maxLogFile = 1 << 30

// LogRecord describes one archived file. It is signed like a manifest.
type LogRecord struct {
	Format  int    `json:"format"`
	System  string `json:"system"`
	Series  string `json:"series"`
	Name    string `json:"name"`              // the file's own name
	Partial bool   `json:"partial,omitempty"` // the file's first RawSize bytes only
	Start   string `json:"start,omitempty"`   // position of its first byte (an LSN)
	End     string `json:"end,omitempty"`     // position after its last byte
	// The first and the latest timestamp of the events a binary log piece
	// holds (the server's clock), and the GTID of its last transaction.
	FirstEvent  time.Time   `json:"first_event,omitzero"`
	LastEvent   time.Time   `json:"last_event,omitzero"`
	GTID        string      `json:"gtid,omitempty"`
	Archived    time.Time   `json:"archived"` // when it was stored (the agent's clock)
	Size        int64       `json:"size"`     // stored bytes
	RawSize     int64       `json:"raw_size"` // bytes of the file itself
	SHA256      string      `json:"sha256"`   // of the stored bytes
	Compression string      `json:"compression"`
	Encryption  *Encryption `json:"encryption,omitempty"`
	Signature   *Signature  `json:"signature,omitempty"`
}

// LogFile is a file to archive.
type LogFile struct {
	System  string
	Series  string
	Name    string
	Partial bool
	Start   string
	End     string
	// FirstEvent, LastEvent and GTID go to the record (binary logs).
	FirstEvent, LastEvent time.Time
	GTID                  string
	Data                  []byte
}

var (
	systemRE  = regexp.MustCompile(`^[0-9]{1,20}$`)
	seriesRE  = regexp.MustCompile(`^[0-9A-F]{8}$`)
	logNameRE = regexp.MustCompile(`^[0-9A-F]{8}(\.history|[0-9A-F]{16}(\.partial\.[0-9a-f]{8})?)$`)

	binlogSystemRE = regexp.MustCompile(`^[0-9a-f][0-9a-f-]{0,39}$`)
	// BinlogSeriesRE is a binary log's series: its name and when it was
	// created.
	BinlogSeriesRE = regexp.MustCompile(`^([A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}\.[0-9]{6,10})\.([0-9a-f]{8})$`)
	// binlogPieceRE is a piece's name: its first and end offsets.
	binlogPieceRE = regexp.MustCompile(`^[0-9a-f]{12}-[0-9a-f]{12}(\.last)?$`)
)

// storedName is the name of the file's keys in its series: partials carry
// how much they hold.
func (f *LogFile) StoredName() string {
	if f.Partial {
		return fmt.Sprintf("%s.partial.%08x", f.Name, len(f.Data))
	}
	return f.Name
}

// LogArchive writes files to the log archive of a scope in every
// destination.
type LogArchive struct {
	Scope       Scope // Driver set
	Storages    []storage.Storage
	Compression string      // "zstd" when empty
	Recipients  *Recipients // nil: not encrypted
	Signer      *SigningKey // nil: unsigned
	Logger      *slog.Logger
	Now         func() time.Time
	once        sync.Once
	codec       codec
	codecErr    error
}

// LogPrefix is the key prefix of a scope's log archive.
func (s Scope) LogPrefix() string { return s.Prefix() + logKindOf(s.Driver).dir + "/" }

// logKey is where a stored name of a series is kept.
func (s Scope) logKey(system, series, name string) string {
	return s.LogPrefix() + system + "/" + series + "/" + name
}

// Store compresses, encrypts and checksums f, then writes it and its record
// to every storage. It returns the record, and an error naming every
// storage that did not take the file: the caller must not count the file as
// archived then (and stores it again).
func (a *LogArchive) Store(ctx context.Context, f LogFile) (*LogRecord, error) {
	if k := logKindOf(a.Scope.Driver); !k.system.MatchString(f.System) || !k.series.MatchString(f.Series) || !k.name.MatchString(f.StoredName()) {
		return nil, fmt.Errorf("log archive: bad name %s/%s", f.Series, f.StoredName())
	}
	if len(f.Data) > maxLogFile {
		return nil, fmt.Errorf("log archive: %s holds %d bytes, more than the %d a file may", f.Name, len(f.Data), maxLogFile)
	}
	stored, rec, err := a.encode(f)
	if err != nil {
		return nil, err
	}
	doc, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, err
	}
	if a.Signer != nil {
		if doc, err = a.Signer.sign(logDomain, doc); err != nil {
			return nil, err
		}
	}
	cod := a.codec
	name := f.StoredName()
	dataKey := a.Scope.logKey(f.System, f.Series, name+cod.ext+a.encExt(name))
	recKey := a.Scope.logKey(f.System, f.Series, name+".json")
	var errs []error
	for _, st := range a.Storages {
		if _, err := st.Put(ctx, dataKey, bytes.NewReader(stored)); err != nil {
			errs = append(errs, fmt.Errorf("storage %s: %w", st, err))
			continue
		}
		if _, err := st.Put(ctx, recKey, bytes.NewReader(doc)); err != nil {
			errs = append(errs, fmt.Errorf("storage %s: %w", st, err))
		}
	}
	return rec, errors.Join(errs...)
}

// Delete removes one archived file (its stored name, as StoredName gives
// it) written by this archive's compression and encryption: its record
// first, so that it stops existing before its data goes.
func (a *LogArchive) Delete(ctx context.Context, st storage.Storage, system, series, storedName string) error {
	if _, err := a.chain(); err != nil {
		return err
	}
	if err := st.Delete(ctx, a.Scope.logKey(system, series, storedName+".json")); err != nil {
		return err
	}
	return st.Delete(ctx, a.Scope.logKey(system, series, storedName+a.codec.ext+a.encExt(storedName)))
}

// encExt is the suffix encryption adds to a file's data key.
func (a *LogArchive) encExt(name string) string {
	if a.Recipients != nil && !isMetadata(name) {
		return ".age"
	}
	return ""
}

// chain checks the compression once.
func (a *LogArchive) chain() (codec, error) {
	a.once.Do(func() {
		name := a.Compression
		if name == "" {
			name = DefaultCompression
		}
		a.codec, a.codecErr = codecByName(name)
	})
	return a.codec, a.codecErr
}

// encode runs f through the write chain into memory.
func (a *LogArchive) encode(f LogFile) ([]byte, *LogRecord, error) {
	if _, err := a.chain(); err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	var enc io.WriteCloser = nopWriteCloser{&buf}
	encrypt := a.Recipients != nil && !isMetadata(f.Name)
	if encrypt {
		var err error
		if enc, err = age.Encrypt(&buf, a.Recipients.list...); err != nil {
			return nil, nil, err
		}
	}
	zw, err := a.codec.newWriter(enc, writerOptions{})
	if err != nil {
		return nil, nil, err
	}
	if _, err := zw.Write(f.Data); err != nil {
		return nil, nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, nil, err
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	sum := sha256.Sum256(buf.Bytes())
	rec := &LogRecord{Format: logRecordFormat, System: f.System, Series: f.Series, Name: f.Name, Partial: f.Partial, Start: f.Start, End: f.End,
		FirstEvent: f.FirstEvent.UTC(), LastEvent: f.LastEvent.UTC(), GTID: f.GTID,
		Archived: now().UTC().Truncate(time.Millisecond), Size: int64(buf.Len()), RawSize: int64(len(f.Data)),
		SHA256: hex.EncodeToString(sum[:]), Compression: a.codec.name}
	if encrypt {
		rec.Encryption = &Encryption{Recipients: a.Recipients.Keys}
	}
	return buf.Bytes(), rec, nil
}

// isMetadata reports whether an archived file is metadata, like a
// manifest, rather than data: a timeline history file, which says only
// where timelines branched. It is stored unencrypted (and signed), so
// that listing a restorable window needs no private key.
func isMetadata(name string) bool { return strings.HasSuffix(name, ".history") }

// LogEntry is one archived file as a listing of the storage shows it: its
// record's key and time. Its content is read, and its record checked, by
// FetchLog.
type LogEntry struct {
	System     string
	Series     string
	StoredName string // Name, or Name.partial.<size>
	Name       string
	Partial    bool
	PartSize   int64     // for a partial: the bytes it holds
	Stored     time.Time // the record's time in the storage
	dataKeys   []string  // the file's data key as listed (one, unless names collide)
}

// ListLogs lists the scope's log archive in a storage: every file whose
// record is there, in key order (series, then name). Keys that are not the
// archive's are ignored.
func ListLogs(ctx context.Context, st storage.Storage, scope Scope) ([]LogEntry, error) {
	prefix := scope.LogPrefix()
	kind := logKindOf(scope.Driver)
	var out []LogEntry
	data := map[string][]string{} // series/storedName -> data keys
	err := st.List(ctx, prefix, func(o storage.Object) error {
		parts := strings.Split(strings.TrimPrefix(o.Key, prefix), "/")
		if len(parts) != 3 || !kind.system.MatchString(parts[0]) || !kind.series.MatchString(parts[1]) {
			return nil
		}
		system, series, file := parts[0], parts[1], parts[2]
		if name, isRec := strings.CutSuffix(file, ".json"); isRec {
			if !kind.name.MatchString(name) {
				return nil
			}
			e := LogEntry{System: system, Series: series, StoredName: name, Name: name, Stored: o.ModTime}
			if base, part, found := strings.Cut(name, ".partial."); found {
				e.Name, e.Partial = base, true
				fmt.Sscanf(part, "%x", &e.PartSize)
			}
			out = append(out, e)
			return nil
		}
		if kind.name.MatchString(dataBase(file)) {
			k := system + "/" + series + "/" + dataBase(file)
			data[k] = append(data[k], o.Key)
		}
		return nil
	})
	for i := range out {
		out[i].dataKeys = data[out[i].System+"/"+out[i].Series+"/"+out[i].StoredName]
	}
	return out, err
}

// dataBase is the stored name of a data key's file name: the name without
// its compression and encryption suffixes.
func dataBase(file string) string {
	for _, ext := range []string{".age", ".zst", ".gz"} {
		file = strings.TrimSuffix(file, ext)
	}
	return file
}

// FetchLog reads one archived file, checks its record (signature, when
// trust checks them), its size and SHA-256, decrypts and decompresses it,
// and returns its bytes with the record. Anything that does not match
// wraps ErrCorrupt or ErrUntrusted and names the file.
func FetchLog(ctx context.Context, st storage.Storage, scope Scope, e LogEntry, trust Trust, ids *Identities) ([]byte, *LogRecord, error) {
	recKey := scope.logKey(e.System, e.Series, e.StoredName+".json")
	doc, err := readAll(ctx, st, recKey, 64<<10)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", e.StoredName, err)
	}
	rec, err := checkLogRecord(doc, e, trust)
	if err != nil {
		return nil, nil, err
	}
	cod, err := codecByName(rec.Compression)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, e.StoredName, err)
	}
	ext := cod.ext
	if rec.Encryption != nil {
		ext += ".age"
	}
	stored, err := readAll(ctx, st, scope.logKey(e.System, e.Series, e.StoredName+ext), rec.Size+1)
	if errors.Is(err, fs.ErrNotExist) {
		// Also fs.ErrNotExist: a partial replaced by a newer one while it
		// was read loses its record first, then its data.
		return nil, nil, fmt.Errorf("%w: %s is missing from storage (its record is there): %w", ErrCorrupt, e.StoredName, fs.ErrNotExist)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", e.StoredName, err)
	}
	sum := sha256.Sum256(stored)
	if int64(len(stored)) != rec.Size || hex.EncodeToString(sum[:]) != rec.SHA256 {
		return nil, nil, fmt.Errorf("%w: %s does not match its record (%d bytes, SHA-256 %x; the record says %d, %s)", ErrCorrupt, e.StoredName, len(stored), sum, rec.Size, rec.SHA256)
	}
	raw, err := decodeLog(stored, rec, cod, ids)
	if err != nil {
		return nil, nil, err
	}
	return raw, rec, nil
}

// LogRecordOf reads and checks the record of an archived file, not its
// data: what a window needs to know about the newest file.
func LogRecordOf(ctx context.Context, st storage.Storage, scope Scope, e LogEntry, trust Trust) (*LogRecord, error) {
	doc, err := readAll(ctx, st, scope.logKey(e.System, e.Series, e.StoredName+".json"), 64<<10)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.StoredName, err)
	}
	return checkLogRecord(doc, e, trust)
}

// checkLogRecord parses a record and checks that trust accepts it and that
// it is the record of the file it was listed as.
func checkLogRecord(doc []byte, e LogEntry, trust Trust) (*LogRecord, error) {
	var rec LogRecord
	if err := json.Unmarshal(doc, &rec); err != nil {
		return nil, fmt.Errorf("%w: the record of %s is not valid JSON: %v", ErrCorrupt, e.StoredName, err)
	}
	if trust.Checks() {
		err := trust.check(logDomain, doc)
		switch {
		case errors.Is(err, errUnsigned) && trust.AllowUnsigned:
		case errors.Is(err, errUnsigned):
			return nil, fmt.Errorf("%w: archived file %s is not signed (one stored before signing was set up passes with --allow-unsigned)", ErrUntrusted, e.StoredName)
		case err != nil:
			return nil, fmt.Errorf("%w: archived file %s: %w", ErrUntrusted, e.StoredName, err)
		}
	}
	name := rec.Name
	if rec.Partial {
		name = fmt.Sprintf("%s.partial.%08x", rec.Name, rec.RawSize)
	}
	switch {
	case rec.Format != logRecordFormat:
		return nil, fmt.Errorf("the record of %s has format %d, this Remora reads %d: use a newer remora", e.StoredName, rec.Format, logRecordFormat)
	case rec.System != e.System || rec.Series != e.Series || name != e.StoredName:
		// A record copied under another name: replaying it there would
		// splice a file into the wrong place of the chain.
		return nil, fmt.Errorf("%w: the record stored as %s/%s/%s is the record of %s/%s/%s", ErrCorrupt, e.System, e.Series, e.StoredName, rec.System, rec.Series, name)
	case rec.RawSize < 0 || rec.RawSize > maxLogFile || rec.Size < 0 || rec.Size > maxLogFile+1<<20:
		return nil, fmt.Errorf("%w: the record of %s has bad sizes", ErrCorrupt, e.StoredName)
	}
	return &rec, nil
}

// decodeLog decrypts and decompresses a file's stored bytes, bounded by the
// raw size its record gives.
func decodeLog(stored []byte, rec *LogRecord, cod codec, ids *Identities) ([]byte, error) {
	var plain io.Reader = bytes.NewReader(stored)
	if rec.Encryption != nil {
		if ids == nil {
			return nil, fmt.Errorf("%w: archived file %s is encrypted to %s: give --identity", ErrNoIdentity, rec.Name, strings.Join(rec.Encryption.Recipients, ", "))
		}
		dr, err := age.Decrypt(plain, ids.list...)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot decrypt archived file %s: %v", ErrNoIdentity, rec.Name, err)
		}
		plain = dr
	} else if ids != nil && len(ids.list) > 0 && !isMetadata(rec.Name) {
		return nil, fmt.Errorf("%w: archived file %s is not encrypted, but an identity was given: refusing what a key holder cannot have written", ErrUntrusted, rec.Name)
	}
	dec, err := cod.newReader(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, rec.Name, err)
	}
	defer dec.Close()
	raw, err := io.ReadAll(&rawBound{r: dec, key: rec.Name, size: rec.RawSize})
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s matches its checksum but does not decrypt or decompress: %v", ErrCorrupt, rec.Name, err)
	}
	return raw, nil
}

// DeleteLog removes an archived file: its record first, so that it stops
// existing before its data goes.
func DeleteLog(ctx context.Context, st storage.Storage, scope Scope, e LogEntry) error {
	if err := st.Delete(ctx, scope.logKey(e.System, e.Series, e.StoredName+".json")); err != nil {
		return err
	}
	for _, k := range e.dataKeys {
		if err := st.Delete(ctx, k); err != nil {
			return err
		}
	}
	return nil
}
