package drivers

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// Backup methods (remora.dev/method, --method).
const (
	// MethodLogical dumps databases with the server's dump tools: the default.
	MethodLogical = "logical"
	// MethodPhysical copies the server's files (a PostgreSQL base backup).
	MethodPhysical = "physical"
)

// KindPhysical is a copy of a whole server's files: a PostgreSQL base backup.
const KindPhysical = "physical"

// MetaDumper is a driver that learns part of an object's Meta only by
// dumping it (where a base backup's WAL ended). Backup calls DumpMeta rather
// than Dump and merges what it returns into the object's record, so the
// manifest keeps it.
type MetaDumper interface {
	DumpMeta(ctx context.Context, obj Object, w io.Writer) (map[string]string, error)
}

// DumpMeta dumps obj through d, returning the Meta the dump learnt when d is
// a MetaDumper (else nil).
func DumpMeta(ctx context.Context, d Driver, obj Object, w io.Writer) (map[string]string, error) {
	if md, ok := d.(MetaDumper); ok {
		return md.DumpMeta(ctx, obj, w)
	}
	return nil, d.Dump(ctx, obj, w)
}

// ExtractOptions say where a physical object is unpacked.
type ExtractOptions struct {
	// Dir is the data directory to create: it must not exist or be empty.
	Dir string
	// Tablespaces maps a tablespace's OID to the directory its files go
	// to; a tablespace not named goes where it was on the backed-up server.
	Tablespaces map[string]string
	// Warn, if set, receives what the operator should know.
	Warn func(msg string)
}

// Format is what Remora can do with an object of one format without a
// server: check its inner consistency and unpack it.
type Format struct {
	// Check reads r (the object's raw bytes) to its end and returns an error
	// naming what does not match the object's own record of itself (a
	// file's checksum against a base backup's backup_manifest). An error of
	// r is returned wrapped.
	Check func(ctx context.Context, obj Object, r io.Reader) error
	// Extract unpacks r into o.Dir. It reads r to its end before it
	// makes anything permanent: a read error (a checksum that failed at the
	// end) leaves nothing behind.
	Extract func(ctx context.Context, obj Object, r io.Reader, o ExtractOptions) error
}

var (
	formatsMu sync.Mutex
	formats   = map[string]Format{}
	physical  = map[string]bool{}
)

// RegisterFormat makes the hooks of an object format available.
func RegisterFormat(name string, f Format) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	if _, dup := formats[name]; dup {
		panic("drivers: RegisterFormat called twice for " + name)
	}
	formats[name] = f
}

// FormatOf returns the hooks of an object format, if it has any.
func FormatOf(name string) (Format, bool) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	f, ok := formats[name]
	return f, ok
}

// RegisterPhysical says that the named driver takes physical backups.
func RegisterPhysical(name string) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	physical[name] = true
}

// CheckMethod checks that a driver can back up with a method ("" is
// logical).
func CheckMethod(driver, method string) error {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	switch {
	case method == "" || method == MethodLogical:
		return nil
	case method != MethodPhysical:
		return fmt.Errorf("unknown backup method %q: want logical or physical (set --method or REMORA_METHOD)", method)
	case !physical[driver]:
		return fmt.Errorf("backup method physical is for the postgres driver, not %q: use --method logical", driver)
	}
	return nil
}
