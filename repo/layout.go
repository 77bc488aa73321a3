package repo

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// The layout of a storage, below its URL's prefix:
//
//	<namespace>/<workload>/<driver>/<ID>/<object><.zst|.gz>[.age]
//	<namespace>/<workload>/<driver>/<ID>/manifest.json   (written last)
//	<namespace>/<workload>/<driver>/<ID>/verified.json   (written by verify)
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
}

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
	return nil
}

// workloadPrefix is the key prefix of every backup of the workload.
func (s Scope) workloadPrefix() string { return s.Namespace + "/" + s.Workload + "/" }

// Prefix is the key prefix of the scope's backups: of one driver's, or of
// every driver's when Driver is empty.
func (s Scope) Prefix() string {
	if s.Driver == "" {
		return s.workloadPrefix()
	}
	return s.workloadPrefix() + s.Driver + "/"
}

// Dir is the key prefix of one backup.
func (s Scope) Dir(driver, id string) string {
	return s.workloadPrefix() + driver + "/" + id + "/"
}

// Dir is the key prefix of the backup a manifest describes.
func (m *Manifest) Dir() string {
	return Scope{Namespace: m.Namespace, Workload: m.Workload}.Dir(m.Driver, m.ID)
}

// key is where one object of a backup is stored.
func (m *Manifest) key(name string) string { return m.Dir() + name }

// parseKey splits a key of the scope's workload by the layout: the driver,
// the backup ID and the name of the object in that backup's directory. ok is
// false for a key that is not in a backup's directory.
func (s Scope) parseKey(key string) (driver, id, name string, ok bool) {
	rest, found := strings.CutPrefix(key, s.workloadPrefix())
	if !found {
		return "", "", "", false
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) != 3 || parts[2] == "" {
		return "", "", "", false
	}
	if _, err := time.Parse(IDFormat, parts[1]); err != nil {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
