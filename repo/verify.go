package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"remora.dev/remora/storage"
)

// ErrCorrupt is wrapped by every error about stored data that does not match
// its manifest.
var ErrCorrupt = errors.New("backup is corrupt")

// Verify downloads every object of a backup and checks its size and SHA-256
// against the manifest; they cover the stored bytes, so no key is needed. If
// the backup is not encrypted, or ids can decrypt it, it also checks that every
// object decrypts and decompresses to the recorded size. It records the result
// beside the manifest (unless record is false) and returns an error wrapping
// ErrCorrupt if anything does not match.
func Verify(ctx context.Context, st storage.Storage, m *Manifest, ids *Identities, record bool) error {
	var bad []error
	var problems []string // as the record keeps them
	for _, o := range m.Objects {
		if err := verifyObject(ctx, st, m, ids, o); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return err // could not check: no verdict
			}
			bad = append(bad, err)
			problems = append(problems, err.Error())
		}
	}
	if record {
		v := Verification{Time: time.Now().UTC(), OK: len(problems) == 0, Problems: problems}
		b, _ := json.MarshalIndent(v, "", "  ")
		if _, err := st.Put(ctx, m.key(VerifiedName), bytes.NewReader(b)); err != nil && len(problems) == 0 {
			return fmt.Errorf("backup %s is good, but recording that failed: %w", m.ID, err)
		}
	}
	return errors.Join(bad...)
}

func verifyObject(ctx context.Context, st storage.Storage, m *Manifest, ids *Identities, rec ObjectRecord) error {
	deep := m.Encryption == nil || ids != nil
	o, err := openObject(ctx, st, m, ids, rec, 0, deep)
	if err != nil {
		return err
	}
	defer o.Close()
	n, readErr := io.Copy(io.Discard, o)
	// The checksum's verdict first: read what decompression left.
	if err := o.finish(); err != nil {
		return err
	}
	switch {
	case readErr != nil:
		return o.explain(readErr)
	case deep && n != rec.RawSize:
		return fmt.Errorf("%w: %s decompresses to %d bytes, the manifest says %d", ErrCorrupt, rec.Key, n, rec.RawSize)
	}
	return nil
}
