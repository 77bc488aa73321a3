package repo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"remora.dev/remora/drivers"
	"remora.dev/remora/repo/retention"
	"remora.dev/remora/storage"
	"remora.dev/remora/storage/file"
)

func newKey(t *testing.T) *SigningKey {
	t.Helper()
	priv, pub, id, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	vk, err := ParseVerifyKeys(pub)
	if err != nil || len(vk) != 1 || vk[0].ID != id || k.Verify.ID != id {
		t.Fatalf("verify key %v %v, id %s", vk, err, id)
	}
	return k
}

// signedBackup takes a signed backup at t into st.
func signedBackup(t *testing.T, st storage.Storage, k *SigningKey, at time.Time, rcpt *Recipients) *Manifest {
	t.Helper()
	res, err := Backup(context.Background(), BackupOptions{Scope: scope, Driver: &source{sizes: map[string]int{"small": 1000}},
		Now: func() time.Time { return at }, Destinations: []Destination{{Storage: st}}, Signer: k, Recipients: rcpt})
	if err != nil {
		t.Fatal(err)
	}
	return res.Manifest
}

// editJSON rewrites the JSON object stored at key, as someone who can write
// to the bucket would.
func editJSON(t *testing.T, st storage.Storage, key string, edit func(map[string]any)) {
	t.Helper()
	r, err := st.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	b, _ = json.MarshalIndent(doc, "", "  ")
	if _, err := st.Put(context.Background(), key, strings.NewReader(string(b))); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, st storage.Storage, key, data string) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// TestBucketWriterCannotForge: with a verify key, every way a bucket writer
// can alter a signed backup makes List report it and Select refuse it with
// ErrUntrusted (or, for a manifest moved to another directory, ErrCorrupt),
// so that verify and restore never read it.
func TestBucketWriterCannotForge(t *testing.T) {
	k := newKey(t)
	attacker := newKey(t)
	now := time.Now().UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name    string
		attack  func(t *testing.T, st storage.Storage, m *Manifest)
		problem string
		trust   func(Trust) Trust
	}{
		{"object replaced, checksum and size fixed", func(t *testing.T, st storage.Storage, m *Manifest) {
			put(t, st, m.key(m.Objects[0].Key), "DROP TABLE users;")
			editJSON(t, st, m.key(ManifestName), func(d map[string]any) {
				o := d["objects"].([]any)[0].(map[string]any)
				o["size"], o["sha256"] = 17, strings.Repeat("ab", 32)
			})
		}, "altered after signing", nil},
		{"signature removed", func(t *testing.T, st storage.Storage, m *Manifest) {
			editJSON(t, st, m.key(ManifestName), func(d map[string]any) { delete(d, "signature") })
		}, "not signed", nil},
		{"re-signed with another key", func(t *testing.T, st storage.Storage, m *Manifest) {
			var doc map[string]any
			editJSON(t, st, m.key(ManifestName), func(d map[string]any) { delete(d, "signature"); d["warnings"] = []string{"evil"}; doc = d })
			b, _ := json.Marshal(doc)
			b, _ = attacker.sign(manifestDomain, b)
			put(t, st, m.key(ManifestName), string(b))
		}, "not a verify key here", nil},
		{"encryption dropped", func(t *testing.T, st storage.Storage, m *Manifest) {
			editJSON(t, st, m.key(ManifestName), func(d map[string]any) { delete(d, "encryption") })
		}, "altered after signing", nil},
		{"a member added in another case", func(t *testing.T, st storage.Storage, m *Manifest) {
			editJSON(t, st, m.key(ManifestName), func(d map[string]any) { d["Objects"] = []any{} })
		}, "altered after signing", nil},
		{"unsigned is refused even with AllowUnsigned when the signature is wrong", func(t *testing.T, st storage.Storage, m *Manifest) {
			editJSON(t, st, m.key(ManifestName), func(d map[string]any) { d["databases"] = []string{"other"} })
		}, "altered after signing", func(tr Trust) Trust { tr.AllowUnsigned = true; return tr }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := file.New(t.TempDir())
			rcpt, _ := age.GenerateX25519Identity()
			r, _ := ParseRecipients(rcpt.Recipient().String())
			m := signedBackup(t, st, k, now, r)
			tc.attack(t, st, m)
			trust := Trust{Keys: []*VerifyKey{k.Verify}}
			if tc.trust != nil {
				trust = tc.trust(trust)
			}
			es, err := List(context.Background(), st, scope, trust)
			if err != nil || len(es) != 1 {
				t.Fatalf("list: %v %v", es, err)
			}
			if es[0].Problem == "" || !strings.Contains(es[0].Problem, tc.problem) || es[0].Signed {
				t.Fatalf("problem %q (signed %v), want one saying %q", es[0].Problem, es[0].Signed, tc.problem)
			}
			_, err = Select(es, Selector{ID: m.ID})
			if !errors.Is(err, ErrUntrusted) && !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), m.ID) {
				t.Fatalf("select: %v, want a refusal naming %s", err, m.ID)
			}
			if _, err := Select(es, Selector{Latest: true}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("select --latest: %v, want nothing usable", err)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSignedBackupPasses: an untouched signed backup lists as signed, its
// verification record is signed and believed, and a verify key without the
// signing key (a machine that only checks) accepts it.
func TestSignedBackupPasses(t *testing.T) {
	k := newKey(t)
	st := file.New(t.TempDir())
	ctx := context.Background()
	m := signedBackup(t, st, k, time.Now(), nil)
	if m.Signature == nil || m.Signature.KeyID != k.Verify.ID {
		t.Fatalf("manifest signature: %+v", m.Signature)
	}
	trust := Trust{Keys: []*VerifyKey{k.Verify}}
	es, _ := List(ctx, st, scope, trust)
	if len(es) != 1 || es[0].Problem != "" || !es[0].Signed {
		t.Fatalf("list: %+v", es)
	}
	if err := Verify(ctx, st, &es[0], VerifyOptions{Record: true, Signer: k}); err != nil {
		t.Fatal(err)
	}
	es, _ = List(ctx, st, scope, trust)
	if v := es[0].Verification; v == nil || !v.OK || v.Signature == nil {
		t.Fatalf("verification: %+v", v)
	}
	if err := Restore(ctx, st, es[0].Manifest, &source{}, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	// Without keys nothing is checked, and nothing is called signed.
	es, _ = List(ctx, st, scope, Trust{})
	if es[0].Problem != "" || es[0].Signed {
		t.Fatalf("list without keys: %+v", es[0])
	}
}

// TestForgedVerificationIgnored: a verification record that is unsigned,
// signed for another backup, or left from a replaced manifest is not
// believed.
func TestForgedVerificationIgnored(t *testing.T) {
	k := newKey(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	trust := Trust{Keys: []*VerifyKey{k.Verify}}
	for _, tc := range []struct {
		name   string
		attack func(st storage.Storage, a, b *Manifest)
		trust  Trust
	}{
		{"unsigned record", func(st storage.Storage, a, b *Manifest) {
			put(t, st, b.key(VerifiedName), `{"time":"2026-01-01T00:00:00Z","ok":true}`)
		}, trust},
		{"record of another backup", func(st storage.Storage, a, b *Manifest) {
			r, _ := st.Open(ctx, a.key(VerifiedName))
			rec, _ := io.ReadAll(r)
			r.Close()
			put(t, st, b.key(VerifiedName), string(rec))
		}, Trust{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := file.New(t.TempDir())
			a := signedBackup(t, st, k, now.Add(-time.Hour), nil)
			b := signedBackup(t, st, k, now, nil)
			es, _ := List(ctx, st, scope, trust)
			if err := Verify(ctx, st, &es[0], VerifyOptions{Record: true, Signer: k}); err != nil {
				t.Fatal(err)
			}
			tc.attack(st, a, b)
			es, _ = List(ctx, st, scope, tc.trust)
			if es[0].Verification == nil {
				t.Fatal("the genuine record of the first backup is not believed")
			}
			if v := es[1].Verification; v != nil {
				t.Fatalf("a forged record is believed: %+v", v)
			}
		})
	}
}

// TestForgedBackupsDoNotCountForRetention: unsigned manifests planted with
// newer IDs would make last=1 delete the real backups; with a key they
// neither count nor are deleted.
func TestForgedBackupsDoNotCountForRetention(t *testing.T) {
	k := newKey(t)
	st := file.New(t.TempDir())
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	real := signedBackup(t, st, k, now.Add(-2*time.Hour), nil)
	for i := 1; i <= 3; i++ {
		backupAt(t, st, now.Add(time.Duration(i)*time.Minute-time.Hour), nil) // unsigned
	}
	if _, err := Prune(ctx, st, scope, &retention.Policy{Last: 1}, PruneOptions{Now: now, Trust: Trust{Keys: []*VerifyKey{k.Verify}}}); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, st); len(got) != 4 || got[0] != real.ID {
		t.Fatalf("left %v: the signed backup must stay, and the forged ones are not retention's to delete", got)
	}
}

// TestIdentityRefusesWhatItCannotHaveWritten: with an identity given, a
// backup that is not encrypted, or not to that identity, is refused before
// anything is restored.
func TestIdentityRefusesWhatItCannotHaveWritten(t *testing.T) {
	ctx := context.Background()
	mine, _ := age.GenerateX25519Identity()
	theirs, _ := age.GenerateX25519Identity()
	keyFile := t.TempDir() + "/key.txt"
	if err := os.WriteFile(keyFile, []byte(mine.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := LoadIdentities(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		to   string // recipients; "" for none
		want error
	}{
		{"plaintext", "", ErrUntrusted},
		{"to someone else", theirs.Recipient().String(), ErrNoIdentity},
		{"to me", mine.Recipient().String(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := file.New(t.TempDir())
			r, _ := ParseRecipients(tc.to)
			res, err := Backup(ctx, BackupOptions{Scope: scope, Driver: &source{sizes: map[string]int{"small": 10}}, Destinations: []Destination{{Storage: st}}, Recipients: r})
			if err != nil {
				t.Fatal(err)
			}
			restored := &countingSource{}
			err = Restore(ctx, st, res.Manifest, restored, RestoreOptions{Identities: ids})
			if !errors.Is(err, tc.want) || (tc.want != nil) != (restored.n == 0) {
				t.Fatalf("restore: %v after %d objects; want %v", err, restored.n, tc.want)
			}
			es, _ := List(ctx, st, scope, Trust{})
			if err := Verify(ctx, st, &es[0], VerifyOptions{Identities: ids}); !errors.Is(err, tc.want) {
				t.Fatalf("verify: %v, want %v", err, tc.want)
			}
		})
	}
}

// countingSource counts the objects it restores.
type countingSource struct {
	source
	n int
}

func (c *countingSource) Restore(ctx context.Context, obj drivers.Object, r io.Reader, o drivers.RestoreOptions) error {
	c.n++
	return c.source.Restore(ctx, obj, r, o)
}
