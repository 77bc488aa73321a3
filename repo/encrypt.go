package repo

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"filippo.io/age"
)

// ageExt is appended to the name of an encrypted object.
const ageExt = ".age"

// Recipients are the age public keys a backup is encrypted to.
type Recipients struct {
	Keys []string // as given, for the manifest
	list []age.Recipient
}

// ParseRecipients reads X25519 age public keys (age1...) separated by commas,
// spaces or newlines; lines starting with # are comments. Empty input means
// no encryption.
func ParseRecipients(s string) (*Recipients, error) {
	var r Recipients
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, f := range strings.FieldsFunc(line, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' || c == '\r' }) {
			rec, err := age.ParseX25519Recipient(f)
			if err != nil {
				return nil, fmt.Errorf("encryption recipient %q is not an age public key (age1...): %v", f, err)
			}
			r.Keys = append(r.Keys, f)
			r.list = append(r.list, rec)
		}
	}
	if len(r.Keys) == 0 {
		return nil, nil
	}
	return &r, nil
}

// Identities are the age private keys that decrypt backups.
type Identities struct {
	file string
	list []age.Identity
}

// LoadIdentities reads an age identity file (AGE-SECRET-KEY-1... lines, as
// age-keygen writes them). An empty path means none.
func LoadIdentities(path string) (*Identities, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		// The parser's message may quote the line; the line may be a key.
		return nil, fmt.Errorf("identity file %s holds no valid age identity (want AGE-SECRET-KEY-1... lines, as age-keygen writes)", path)
	}
	return &Identities{file: path, list: ids}, nil
}

// ErrNoIdentity is wrapped by errors about an encrypted backup that the
// given identities (or none) cannot decrypt.
var ErrNoIdentity = errors.New("cannot decrypt")

// errNeedsIdentity is why an encrypted backup cannot be read without an
// identity.
func errNeedsIdentity(m *Manifest) error {
	return fmt.Errorf("%w: backup %s is encrypted to %s: give the identity with --identity FILE or AGE_IDENTITY_FILE", ErrNoIdentity, m.ID, strings.Join(m.Encryption.Recipients, ", "))
}

// expect refuses a backup that the configured identities should read but
// that is not encrypted to any of them: one stored in plaintext, or
// encrypted to keys of someone else's choosing (the recipients are public).
func (ids *Identities) expect(m *Manifest) error {
	if ids == nil {
		return nil
	}
	if m.Encryption == nil {
		return fmt.Errorf("%w: backup %s is not encrypted, but an identity (%s) is given: a backup this identity should read must be encrypted to it (without --identity and AGE_IDENTITY_FILE, an unencrypted backup is read as it is)", ErrUntrusted, m.ID, ids.file)
	}
	for _, id := range ids.list {
		if x, ok := id.(*age.X25519Identity); ok && slices.Contains(m.Encryption.Recipients, x.Recipient().String()) {
			return nil
		}
	}
	return fmt.Errorf("%w: no identity in %s matches backup %s (it is encrypted to %s)", ErrNoIdentity, ids.file, m.ID, strings.Join(m.Encryption.Recipients, ", "))
}

// decrypter opens the stored stream of an encrypted backup.
func decrypter(m *Manifest, ids *Identities, r io.Reader) (io.Reader, error) {
	if err := ids.expect(m); err != nil {
		return nil, err
	}
	if m.Encryption == nil {
		return r, nil
	}
	if ids == nil {
		return nil, errNeedsIdentity(m)
	}
	dr, err := age.Decrypt(r, ids.list...)
	var noMatch *age.NoIdentityMatchError
	if errors.As(err, &noMatch) {
		return nil, fmt.Errorf("%w: no identity in %s matches backup %s (it is encrypted to %s)", ErrNoIdentity, ids.file, m.ID, strings.Join(m.Encryption.Recipients, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: cannot decrypt: %v", ErrCorrupt, err)
	}
	return dr, nil
}
