package repo

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/storage"
)

// The layout of a storage, below its URL's prefix:
//
//	<namespace>/<workload>/<driver>/<ID>/<object><.zst|.gz>[.age]
//	<namespace>/<workload>/<driver>/<ID>/manifest.json   (written last)
//	<namespace>/<workload>/<driver>/<ID>/verified.json   (written by verify)
//	<namespace>/<workload>/<driver>/physical/<ID>/...     (physical backups: the same three)
//	<namespace>/<workload>/postgres/wal/...               (the WAL archive: not a backup)
//	<namespace>/<workload>/mysql/binlog/...               (the binary log archive: not a backup)
//
// Physical backups live apart from logical ones: an older Remora, which
// reads <driver>/<ID>/ only, never takes one for a logical backup, and
// retention keeps each method's backups by its own count. Keys that are not
// in a backup's directory (the WAL archive's) are no backup's: list,
// retention and the sweep pass over them.
//
// The ID is the UTC start time, e.g. 20261124T230630Z. A directory without
// its manifest is not a backup: list, verify and restore never see it, and
// retention's sweep removes it once it is older than LeftoverAge. Every key
// Remora reads or writes is made here.

// IDFormat is the time layout of backup IDs.
const IDFormat = "20060102T150405Z"

// ManifestName is the name of the object that makes a backup exist.
const ManifestName = "manifest.json"

// VerifiedName is the name of the record that verify leaves.
const VerifiedName = "verified.json"

// Scope names the backups of one workload: <namespace>/<workload>/<driver>.
type Scope struct {
	Namespace string
	Workload  string
	Driver    string // empty in a list means every driver
	// Method is drivers.MethodPhysical or drivers.MethodLogical. Empty
	// means every method in a list, and logical everywhere else (a backup,
	// retention, a key).
	Method string
}

// physicalDir is the directory of a driver's physical backups.
const physicalDir = drivers.MethodPhysical

// physical reports whether the scope's method is physical.
func (s Scope) physical() bool { return s.Method == drivers.MethodPhysical }

// Logical reports whether method names the logical method ("" does).
func Logical(method string) bool { return method == "" || method == drivers.MethodLogical }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)

// Validate checks that the scope's names are usable in storage keys.
func (s Scope) Validate() error {
	if !nameRE.MatchString(s.Namespace) {
		return fmt.Errorf("namespace %q: want letters, digits, '.', '_' or '-' (set --namespace or REMORA_NAMESPACE)", s.Namespace)
	}
	if !nameRE.MatchString(s.Workload) {
		return fmt.Errorf("workload %q: want letters, digits, '.', '_' or '-' (set --workload or REMORA_WORKLOAD)", s.Workload)
	}
	if s.Driver != "" && !nameRE.MatchString(s.Driver) {
		return fmt.Errorf("driver %q is not a valid name", s.Driver)
	}
	if !Logical(s.Method) && !s.physical() {
		return fmt.Errorf("method %q: want logical or physical (set --method or REMORA_METHOD)", s.Method)
	}
	return nil
}

// workloadPrefix is the key prefix of every backup of the workload.
func (s Scope) workloadPrefix() string { return s.Namespace + "/" + s.Workload + "/" }

// Prefix is the key prefix of the scope's backups: of one driver's, or of
// every driver's when Driver is empty. A logical scope's prefix holds the
// driver's physical backups too: parseKey tells them apart.
func (s Scope) Prefix() string {
	switch {
	case s.Driver == "":
		return s.workloadPrefix()
	case s.physical():
		return s.workloadPrefix() + s.Driver + "/" + physicalDir + "/"
	}
	return s.workloadPrefix() + s.Driver + "/"
}

// Dir is the key prefix of one backup of the scope's method.
func (s Scope) Dir(driver, id string) string {
	if s.physical() {
		return s.workloadPrefix() + driver + "/" + physicalDir + "/" + id + "/"
	}
	return s.workloadPrefix() + driver + "/" + id + "/"
}

// Dir is the key prefix of the backup a manifest describes.
func (m *Manifest) Dir() string {
	return Scope{Namespace: m.Namespace, Workload: m.Workload, Method: m.Method}.Dir(m.Driver, m.ID)
}

// backupKey is a key of a backup's directory, split by the layout.
type backupKey struct {
	driver string
	method string // "" (logical) or drivers.MethodPhysical
	id     string
	name   string // of the object in the backup's directory
}

// dir names the backup the key belongs to.
func (k backupKey) dir() string { return k.driver + "/" + k.method + "/" + k.id }

// in reports whether the key belongs to a backup of the scope.
func (k backupKey) in(s Scope) bool {
	return (s.Driver == "" || k.driver == s.Driver) && (s.Method == "" || Logical(k.method) == Logical(s.Method))
}

// key is where one object of a backup is stored.
func (m *Manifest) key(name string) string { return m.Dir() + name }

// parseKey splits a key of the scope's workload by the layout: the driver,
// the method, the backup ID and the name of the object in that backup's
// directory. ok is false for a key that is not in a backup's directory (the
// WAL archive's, or anything else), whatever the scope's method.
func (s Scope) parseKey(key string) (k backupKey, ok bool) {
	rest, found := strings.CutPrefix(key, s.workloadPrefix())
	if !found {
		return k, false
	}
	k.driver, rest, found = strings.Cut(rest, "/")
	if !found {
		return k, false
	}
	if r, phys := strings.CutPrefix(rest, physicalDir+"/"); phys {
		k.method, rest = drivers.MethodPhysical, r
	}
	k.id, k.name, found = strings.Cut(rest, "/")
	if !found || k.name == "" {
		return k, false
	}
	if _, err := time.Parse(IDFormat, k.id); err != nil {
		return k, false
	}
	return k, true
}

// Workloads lists, in one listing of the whole storage, the drivers of
// every workload that hold a backup (a manifest) or a log archive: scopes
// with Namespace, Workload and Driver set, sorted. Keys that fit no
// workload's layout are passed over.
func Workloads(ctx context.Context, st storage.Storage) ([]Scope, error) {
	seen := map[Scope]bool{}
	err := st.List(ctx, "", func(o storage.Object) error {
		parts := strings.SplitN(o.Key, "/", 5)
		if len(parts) < 4 {
			return nil
		}
		s := Scope{Namespace: parts[0], Workload: parts[1], Driver: parts[2]}
		if seen[s] || s.Validate() != nil {
			return nil
		}
		k, ok := s.parseKey(o.Key)
		if ok && k.name == ManifestName || (parts[3] == LogDir || parts[3] == BinlogDir) && len(parts) == 5 {
			seen[s] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Scope, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Scope) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Workload, b.Workload), strings.Compare(a.Driver, b.Driver))
	})
	return out, nil
}
