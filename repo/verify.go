package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/storage"
)

// ErrCorrupt is wrapped by every error about stored data that does not match
// its manifest.
var ErrCorrupt = errors.New("backup is corrupt")

// VerifyOptions say how to verify.
type VerifyOptions struct {
	Identities *Identities // decrypt an encrypted backup, to check its contents too
	// Record keeps the result beside the manifest, signed with Signer if
	// one is given.
	Record bool
	Signer *SigningKey
}

// Verify downloads every object of a listed backup and checks its size and
// SHA-256 against the manifest; they cover the stored bytes, so no key is
// needed. If the backup is not encrypted, or the identities can decrypt it,
// it also checks that every object decrypts and decompresses to the
// recorded size. It returns an error wrapping ErrCorrupt if anything does
// not match. Whether the manifest itself can be trusted is List's to say
// (Entry.Err).
func Verify(ctx context.Context, st storage.Storage, e *Entry, o VerifyOptions) error {
	m := e.Manifest
	if err := e.Err(); err != nil {
		return err
	}
	if err := o.Identities.expect(m); err != nil {
		return err
	}
	var bad []error
	var problems []string // as the record keeps them
	for _, rec := range m.Objects {
		if err := verifyObject(ctx, st, m, o.Identities, rec); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return err // could not check: no verdict
			}
			bad = append(bad, err)
			problems = append(problems, err.Error())
		}
	}
	if o.Record {
		v := Verification{Time: time.Now().UTC(), OK: len(problems) == 0, Problems: problems, Backup: m.Dir(), ManifestSHA256: e.ManifestSHA256}
		if err := writeVerification(ctx, st, m, v, o.Signer); err != nil && len(problems) == 0 {
			return fmt.Errorf("backup %s is good, but recording that failed: %w", m.ID, err)
		}
	}
	return errors.Join(bad...)
}

// writeVerification stores the record beside the manifest, signed if a
// signer is given.
func writeVerification(ctx context.Context, st storage.Storage, m *Manifest, v Verification, signer *SigningKey) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if signer != nil {
		if b, err = signer.sign(verificationDomain, b); err != nil {
			return err
		}
	}
	_, err = st.Put(ctx, m.key(VerifiedName), bytes.NewReader(b))
	return err
}

// verifyObject checks one object: its stored bytes against the manifest's
// size and checksum and, when it can be read through (deep), its raw size
// and, for a format with a check of its own (a base backup's
// backup_manifest), that check, all while it streams.
func verifyObject(ctx context.Context, st storage.Storage, m *Manifest, ids *Identities, rec ObjectRecord) error {
	deep := m.Encryption == nil || ids != nil
	o, err := openObject(ctx, st, m, ids, rec, 0, deep)
	if err != nil {
		return err
	}
	defer o.Close()
	r := &readRecorder{r: o}
	var checkErr error
	if f, ok := drivers.FormatOf(rec.Format); ok && f.Check != nil && deep {
		checkErr = f.Check(ctx, rec.Object, r)
	}
	if checkErr == nil {
		io.Copy(io.Discard, r)
	}
	// The checksum's verdict first: read what decompression left.
	if err := o.finish(); err != nil {
		return err
	}
	switch {
	case r.err != nil:
		return o.explain(r.err)
	case checkErr != nil:
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, rec.Key, checkErr)
	case deep && r.n != rec.RawSize:
		return fmt.Errorf("%w: %s decompresses to %d bytes, the manifest says %d", ErrCorrupt, rec.Key, r.n, rec.RawSize)
	}
	return nil
}

// readRecorder counts what is read through it and keeps the first error
// other than EOF: a format's check that fails because its stream did is
// told from one that found the contents wrong.
type readRecorder struct {
	r   io.Reader
	n   int64
	err error
}

func (c *readRecorder) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}
