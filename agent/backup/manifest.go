// Package backup is Remora's data path: it streams each object of a backup
// from the driver through compression and a SHA-256 into storage, writes the
// manifest last, and reads backups back to list, verify and restore them.
//
// Storage layout, below the storage URL's prefix:
//
//	<namespace>/<workload>/<driver>/<ID>/<object>.zst
//	<namespace>/<workload>/<driver>/<ID>/manifest.json   (written last)
//	<namespace>/<workload>/<driver>/<ID>/verified.json   (written by verify)
//
// The ID is the UTC start time, e.g. 20261124T230630Z. A backup without its
// manifest does not exist: list, verify and restore never see it.
package backup

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"remora.dev/remora/drivers"
)

// IDFormat is the time layout of backup IDs.
const IDFormat = "20060102T150405Z"

// ManifestName is the name of the object that makes a backup exist.
const ManifestName = "manifest.json"

// VerifiedName is the name of the record that verify leaves.
const VerifiedName = "verified.json"

// ManifestFormat is the version of the manifest's layout.
const ManifestFormat = 1

// Manifest describes one complete backup.
type Manifest struct {
	Format          int               `json:"format"`
	ID              string            `json:"id"`
	Namespace       string            `json:"namespace"`
	Workload        string            `json:"workload"`
	Driver          string            `json:"driver"`
	Started         time.Time         `json:"started"`
	Finished        time.Time         `json:"finished"`
	DurationSeconds float64           `json:"duration_seconds"`
	ServerVersion   string            `json:"server_version"`
	Tools           map[string]string `json:"tools"`
	AgentVersion    string            `json:"agent_version"`
	Compression     string            `json:"compression"`
	Encryption      *Encryption       `json:"encryption,omitempty"`
	Databases       []string          `json:"databases"`
	Objects         []ObjectRecord    `json:"objects"`
	Warnings        []string          `json:"warnings,omitempty"`
}

// Encryption records who can decrypt a backup.
type Encryption struct {
	Recipients []string `json:"recipients"`
}

// ObjectRecord is one stored object of a backup.
type ObjectRecord struct {
	drivers.Object
	Key     string `json:"key"`      // file name in the backup's directory, e.g. "databases/app.dump.zst"
	Size    int64  `json:"size"`     // stored bytes
	SHA256  string `json:"sha256"`   // of the stored bytes
	RawSize int64  `json:"raw_size"` // bytes of the dump before compression
}

// Size is the total of the stored objects.
func (m *Manifest) Size() int64 {
	var n int64
	for _, o := range m.Objects {
		n += o.Size
	}
	return n
}

// Verification is what verify found, kept beside the manifest.
type Verification struct {
	Time     time.Time `json:"time"`
	OK       bool      `json:"ok"`
	Problems []string  `json:"problems,omitempty"`
}

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

// Dir is the key prefix of one backup.
func (s Scope) Dir(driver, id string) string {
	return s.Namespace + "/" + s.Workload + "/" + driver + "/" + id + "/"
}

// dir is the key prefix of one backup described by its manifest.
func (m *Manifest) dir() string {
	return Scope{Namespace: m.Namespace, Workload: m.Workload}.Dir(m.Driver, m.ID)
}

// decodeManifest reads and checks a manifest.
func decodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("manifest format %d is not known to this Remora (it reads format %d): use a newer remora", m.Format, ManifestFormat)
	}
	if _, err := time.Parse(IDFormat, m.ID); err != nil {
		return nil, fmt.Errorf("manifest has a bad id %q", m.ID)
	}
	if err := (Scope{m.Namespace, m.Workload, m.Driver}).Validate(); err != nil || m.Driver == "" {
		return nil, fmt.Errorf("manifest has a bad scope %s/%s/%s", m.Namespace, m.Workload, m.Driver)
	}
	if _, err := codecByName(m.Compression); err != nil {
		return nil, err
	}
	for _, o := range m.Objects {
		if o.Key == "" || o.Size < 0 || len(o.SHA256) != 64 {
			return nil, fmt.Errorf("manifest has a bad object record %q", o.Key)
		}
	}
	return &m, nil
}
