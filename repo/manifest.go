// Package repo is the backup repository that the agent and the CLI share:
// where backups live in a storage (layout.go), how one is written (backup.go,
// through the write chain in stream.go) and read back (the read chain beside
// it), listed (catalog.go), verified, restored and pruned by retention.
package repo

import (
	"encoding/json"
	"fmt"
	"time"

	"remora.dev/remora/drivers"
)

// ManifestFormat is the version of the manifest's layout.
const ManifestFormat = 1

// Manifest describes one complete backup.
type Manifest struct {
	Format    int    `json:"format"`
	ID        string `json:"id"`
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	Driver    string `json:"driver"`
	// Method is "physical" for a physical backup; absent for a logical one,
	// so that the manifests written before methods existed read unchanged.
	Method          string            `json:"method,omitempty"`
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
	// Signature is absent when no signing key was configured.
	Signature *Signature `json:"signature,omitempty"`
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

// MethodName is the backup's method: drivers.MethodLogical or
// drivers.MethodPhysical.
func (m *Manifest) MethodName() string {
	if m.Method == "" {
		return drivers.MethodLogical
	}
	return m.Method
}

// HasFiles reports whether the backup holds a files object.
func (m *Manifest) HasFiles() bool {
	for _, o := range m.Objects {
		if o.Kind == drivers.KindFiles {
			return true
		}
	}
	return false
}

// Size is the total of the stored objects.
func (m *Manifest) Size() int64 {
	var n int64
	for _, o := range m.Objects {
		n += o.Size
	}
	return n
}

// Verification is what verify found, kept beside the manifest. It names the
// backup and the manifest it checked, so that a record copied from another
// backup, or left from a manifest since replaced, is not believed.
type Verification struct {
	Time           time.Time  `json:"time"`
	OK             bool       `json:"ok"`
	Problems       []string   `json:"problems,omitempty"`
	Backup         string     `json:"backup"`          // the backup's directory
	ManifestSHA256 string     `json:"manifest_sha256"` // of the manifest's bytes
	Signature      *Signature `json:"signature,omitempty"`
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
	if m.Method != "" && m.Method != drivers.MethodPhysical {
		return nil, fmt.Errorf("manifest method %q is not known to this Remora: use a newer remora", m.Method)
	}
	if err := (Scope{m.Namespace, m.Workload, m.Driver, m.Method}).Validate(); err != nil || m.Driver == "" {
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
