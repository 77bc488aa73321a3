package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a self-signed key pair for 127.0.0.1 named cn, each file
// renamed into place as a Secret volume swaps it.
func writePair(t *testing.T, dir, cn string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "tls.crt.new"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "tls.key.new"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	os.Rename(filepath.Join(dir, "tls.key.new"), filepath.Join(dir, "tls.key"))
	os.Rename(filepath.Join(dir, "tls.crt.new"), filepath.Join(dir, "tls.crt"))
}

// newReloader writes a key pair named cn in a new directory and reads it
// with a CertReloader.
func newReloader(t *testing.T, cn string) (*CertReloader, string) {
	t.Helper()
	dir := t.TempDir()
	writePair(t, dir, cn)
	certs, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return certs, dir
}

// servedCN is the common name of the certificate a TLS server at addr
// presents to a new connection.
func servedCN(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestCertReloader serves a key pair, renews it on disk and expects the new
// one to be served, without a restart, once OnChange has said so.
func TestCertReloader(t *testing.T) {
	certs, dir := newReloader(t, "first")
	if !certs.Ready() {
		t.Error("a reloader that read its pair is not ready")
	}
	changed := make(chan struct{}, 1)
	certs.OnChange = func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: &tls.Config{GetCertificate: certs.GetCertificate}}
	go hs.ServeTLS(ln, "", "")
	defer hs.Close()
	if cn := servedCN(t, ln.Addr().String()); cn != "first" {
		t.Fatalf("serving %q", cn)
	}

	ctx, cancel := context.WithCancel(t.Context())
	watching := make(chan struct{})
	go func() { certs.Watch(ctx); close(watching) }()
	defer func() { cancel(); <-watching }()

	// The watch may not be set up before the first write: the renewal is
	// written again every second until OnChange reports it.
	deadline := time.After(10 * time.Second)
	for picked := false; !picked; {
		writePair(t, dir, "second")
		select {
		case <-changed:
			picked = true
		case <-time.After(time.Second):
		case <-deadline:
			t.Fatal("the renewed certificate was not picked up")
		}
	}
	if cn := servedCN(t, ln.Addr().String()); cn != "second" {
		t.Fatalf("after OnChange, serving %q", cn)
	}
}

// A pair that does not load leaves the current certificate served, and
// reloading the same certificate is no change.
func TestCertReloaderKeepsGoodPair(t *testing.T) {
	certs, dir := newReloader(t, "good")
	changes := 0
	certs.OnChange = func() { changes++ }
	certs.reload()
	if changes != 0 {
		t.Error("reloading the same pair called OnChange")
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	certs.reload()
	c, _ := certs.GetCertificate(nil)
	if leaf, err := x509.ParseCertificate(c.Certificate[0]); err != nil || leaf.Subject.CommonName != "good" || changes != 0 {
		t.Errorf("a bad pair replaced the served one (%v, %d changes)", err, changes)
	}
}
