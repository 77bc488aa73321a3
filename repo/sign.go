package repo

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Manifests and verification records are signed with an Ed25519 key that
// never lives in the storage, so that someone who can write to the bucket
// cannot make `verify` pass or `restore` load data of their choosing: the
// manifest holds every object's SHA-256, its scope and ID, and its
// encryption recipients, and the signature covers all of it.
//
// What is signed is the document without its "signature" member, its
// top-level members in sorted order with insignificant space removed
// (nested values are signed byte for byte as written), after a line naming
// the kind of document. Members a newer Remora adds are signed as well,
// without this version having to know them.

// ErrUntrusted is wrapped by errors about a backup whose signature is
// missing or wrong, or whose encryption is not what the identity expects.
var ErrUntrusted = errors.New("backup cannot be trusted")

// Signature is a document's signature.
type Signature struct {
	KeyID   string `json:"key_id"`  // which key signed: see KeyID
	Ed25519 string `json:"ed25519"` // base64
}

// The first line of what is signed: one kind of document's signature never
// passes for another's.
const (
	manifestDomain     = "remora manifest v1"
	verificationDomain = "remora verification v1"
)

// SigningKey signs manifests and verification records.
type SigningKey struct {
	priv ed25519.PrivateKey
	// Verify is the public half.
	Verify *VerifyKey
}

// VerifyKey checks signatures.
type VerifyKey struct {
	pub ed25519.PublicKey
	// ID names the key in signatures: the first 8 bytes of the SHA-256 of
	// the public key, in hex.
	ID string
}

func newVerifyKey(pub ed25519.PublicKey) *VerifyKey {
	sum := sha256.Sum256(pub)
	return &VerifyKey{pub: pub, ID: hex.EncodeToString(sum[:8])}
}

// GenerateKey makes a key pair: the private key as PKCS #8 PEM, the public
// key as PKIX PEM (both readable by openssl).
func GenerateKey() (private, public []byte, id string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, "", err
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, "", err
	}
	private = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	public = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	return private, public, newVerifyKey(pub).ID, nil
}

// ParseSigningKey reads an Ed25519 private key in PKCS #8 PEM, as `remora
// keygen` writes it. The error never quotes the input.
func ParseSigningKey(b []byte) (*SigningKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block (make one with `remora keygen`)")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("the PRIVATE KEY block is not a valid PKCS #8 key")
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is a %T, not an Ed25519 key", k)
	}
	return &SigningKey{priv: priv, Verify: newVerifyKey(priv.Public().(ed25519.PublicKey))}, nil
}

// ParseVerifyKeys reads one or more Ed25519 public keys in PKIX PEM (several
// while keys are rotated).
func ParseVerifyKeys(b []byte) ([]*VerifyKey, error) {
	var keys []*VerifyKey
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("a PEM %q block: want \"PUBLIC KEY\" blocks (the .pub file `remora keygen` writes)", block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, errors.New("a PUBLIC KEY block is not a valid PKIX key")
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("a public key is a %T, not an Ed25519 key", k)
		}
		keys = append(keys, newVerifyKey(pub))
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM \"PUBLIC KEY\" block (the .pub file `remora keygen` writes)")
	}
	return keys, nil
}

// LoadKeys reads the signing key and the verify keys from files or, where a
// file is not given, from the PEM text itself (as a Secret's key carries
// it). Every argument may be empty. The signing key's public half is a
// verify key too.
func LoadKeys(signingFile, signingPEM, verifyFile, verifyPEM string) (*SigningKey, []*VerifyKey, error) {
	var signer *SigningKey
	var keys []*VerifyKey
	if b, what, err := keyText(signingFile, signingPEM, "signing key"); err != nil {
		return nil, nil, err
	} else if b != nil {
		if signer, err = ParseSigningKey(b); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		keys = append(keys, signer.Verify)
	}
	if b, what, err := keyText(verifyFile, verifyPEM, "verify key"); err != nil {
		return nil, nil, err
	} else if b != nil {
		vk, err := ParseVerifyKeys(b)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		keys = append(keys, vk...)
	}
	return signer, keys, nil
}

func keyText(file, text, what string) ([]byte, string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", what, err)
		}
		return b, what + " file " + file, nil
	case strings.TrimSpace(text) != "":
		return []byte(text), what, nil
	}
	return nil, "", nil
}

// signedBytes is what a signature of the document covers.
func signedBytes(domain string, doc []byte) ([]byte, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(doc, &members); err != nil {
		return nil, err
	}
	delete(members, "signature")
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	buf.WriteString(domain + "\n{")
	for i, name := range names {
		if i > 0 {
			buf.WriteByte(',')
		}
		n, _ := json.Marshal(name)
		buf.Write(n)
		buf.WriteByte(':')
		if err := json.Compact(&buf, members[name]); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// sign returns doc (a JSON object without a signature) with its signature
// added as the last member, indented for people to read.
func (k *SigningKey) sign(domain string, doc []byte) ([]byte, error) {
	msg, err := signedBytes(domain, doc)
	if err != nil {
		return nil, err
	}
	sig := Signature{KeyID: k.Verify.ID, Ed25519: base64.StdEncoding.EncodeToString(ed25519.Sign(k.priv, msg))}
	s, err := json.Marshal(sig)
	if err != nil {
		return nil, err
	}
	doc = bytes.TrimRight(doc, " \n")
	if !bytes.HasSuffix(doc, []byte("}")) {
		return nil, errors.New("sign: not a JSON object")
	}
	out := append(bytes.Clone(doc[:len(doc)-1]), []byte(",\n  \"signature\": ")...)
	out = append(out, s...)
	out = append(out, "\n}\n"...)
	return out, nil
}

// Trust is what List, Verify and Restore accept. With no keys, signatures
// are not checked (the storage is trusted).
type Trust struct {
	Keys []*VerifyKey
	// AllowUnsigned accepts backups that carry no signature (those made
	// before signing was set up). A wrong signature is never accepted.
	AllowUnsigned bool
}

// Checks reports whether signatures are checked.
func (t Trust) Checks() bool { return len(t.Keys) > 0 }

// errUnsigned: a document carries no signature.
var errUnsigned = errors.New("not signed")

// check verifies the signature of doc: nil if a trusted key made it.
func (t Trust) check(domain string, doc []byte) error {
	var d struct {
		Signature *Signature `json:"signature"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return err
	}
	if d.Signature == nil {
		return errUnsigned
	}
	sig, err := base64.StdEncoding.DecodeString(d.Signature.Ed25519)
	if err != nil {
		return errors.New("the signature is not base64")
	}
	msg, err := signedBytes(domain, doc)
	if err != nil {
		return err
	}
	var ids []string
	for _, k := range t.Keys {
		if k.ID == d.Signature.KeyID {
			if ed25519.Verify(k.pub, msg, sig) {
				return nil
			}
			return fmt.Errorf("the signature does not match its content (key %s): it was altered after signing", k.ID)
		}
		ids = append(ids, k.ID)
	}
	return fmt.Errorf("signed by key %q, which is not a verify key here (%s)", d.Signature.KeyID, strings.Join(ids, ", "))
}

// checkManifest is why a manifest's signature is not accepted, or nil.
func (t Trust) checkManifest(doc []byte) error {
	if !t.Checks() {
		return nil
	}
	err := t.check(manifestDomain, doc)
	switch {
	case errors.Is(err, errUnsigned) && t.AllowUnsigned:
		return nil
	case errors.Is(err, errUnsigned):
		return fmt.Errorf("%w: the manifest is not signed (a backup made before signing was set up passes with --allow-unsigned)", ErrUntrusted)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	return nil
}
