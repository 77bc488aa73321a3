package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/storage"
)

// DrilledName is the name of the record a restore drill leaves beside the
// manifest.
const DrilledName = "drilled.json"

// drillDomain is what a drill record's signature is made for.
const drillDomain = "remora drill v1"

// Drill is what a restore drill found: the backup restored into a
// throwaway server and checked against what the dump recorded. It names
// the backup and the manifest it drilled, as a Verification does, so a
// record copied from another backup is not believed.
type Drill struct {
	Time           time.Time    `json:"time"`
	OK             bool         `json:"ok"`
	Problems       []string     `json:"problems,omitempty"`
	Seconds        float64      `json:"seconds"`
	PeakRSSBytes   int64        `json:"peak_rss_bytes,omitempty"` // of the throwaway server and the restore tools
	Checks         []DrillCheck `json:"checks,omitempty"`
	Backup         string       `json:"backup"`          // the backup's directory
	ManifestSHA256 string       `json:"manifest_sha256"` // of the manifest's bytes
	Signature      *Signature   `json:"signature,omitempty"`
}

// DrillCheck is one comparison of a drill: a table's rows, a key space's
// keys, a file's checksum, as recorded at dump time and as found.
type DrillCheck struct {
	Object string `json:"object"` // the object's name in the backup
	What   string `json:"what"`   // e.g. "rows of public.orders"
	Want   string `json:"want"`
	Got    string `json:"got"`
	OK     bool   `json:"ok"`
}

// WriteDrill stores a drill's record beside the backup's manifest, signed
// if a signer is given. The entry is the one List returned for it.
func WriteDrill(ctx context.Context, st storage.Storage, e *Entry, d Drill, signer *SigningKey) error {
	d.Backup, d.ManifestSHA256 = e.Manifest.Dir(), e.ManifestSHA256
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if signer != nil {
		if b, err = signer.sign(drillDomain, b); err != nil {
			return err
		}
	}
	_, err = st.Put(ctx, e.Manifest.key(DrilledName), bytes.NewReader(b))
	return err
}

// readDrill reads the drill record beside manifest m, or nil if there is
// none that can be believed (as readVerification decides).
func readDrill(ctx context.Context, st storage.Storage, trust Trust, m *Manifest, manifestSHA string) *Drill {
	b, err := readAll(ctx, st, m.key(DrilledName), 1<<20)
	if err != nil {
		return nil
	}
	var d Drill
	if json.Unmarshal(b, &d) != nil || d.Backup != m.Dir() || d.ManifestSHA256 != manifestSHA {
		return nil
	}
	if trust.Checks() && trust.check(drillDomain, b) != nil {
		return nil
	}
	return &d
}

// Proven reports whether the backup was shown good after it was written:
// it verified, or a restore drill passed.
func (e *Entry) Proven() bool {
	return e.Err() == nil && (e.Verification != nil && e.Verification.OK || e.Drill != nil && e.Drill.OK)
}

// RestoreObject loads one object of logical backup m through drv, checked
// against its SHA-256 while it streams as Restore checks it: a restore
// drill loads each object into its own throwaway target.
func RestoreObject(ctx context.Context, st storage.Storage, m *Manifest, ids *Identities, rec ObjectRecord, drv drivers.Driver, opts drivers.RestoreOptions) error {
	if _, err := codecByName(m.Compression); err != nil {
		return err
	}
	if m.Encryption != nil && ids == nil {
		return errNeedsIdentity(m)
	}
	if err := ids.expect(m); err != nil {
		return err
	}
	if err := drv.CheckRestore(ctx, []drivers.Object{rec.Object}, opts); err != nil {
		return err
	}
	return restoreObject(ctx, st, m, ids, rec, drv, opts)
}
