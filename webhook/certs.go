package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"remora.dev/remora/internal/kube"
)

// CertManager keeps the webhook's TLS in a Secret of its own namespace with no
// outside help: it creates a CA and a serving certificate, writes the CA bundle
// into the MutatingWebhookConfiguration's caBundle, renews both when two thirds
// of their life has passed, and serves the current certificate without a
// restart. Several replicas share the Secret; writes use resourceVersion, so
// a replica that loses a race re-reads and adopts the winner's certificates.
//
// Rotation never breaks the API server's trust: a new CA is added to the bundle
// beside the old one and published in caBundle before any certificate it signs
// is served, and a CA leaves the bundle only once it has expired (which the
// certificates it signed did first).
type CertManager struct {
	Client        *kube.Client
	Namespace     string
	Secret        string
	WebhookConfig string   // MutatingWebhookConfiguration whose caBundle is kept
	Hosts         []string // DNS names and IP addresses of the serving certificate
	CAValidity    time.Duration
	CertValidity  time.Duration
	Log           *slog.Logger
	OnChange      func() // called after a different certificate is loaded

	now  func() time.Time
	cert atomic.Pointer[tls.Certificate]
}

// Secret keys. ca.key is the newest CA's key; ca.crt may hold older CAs too.
const (
	keyCACert = "ca.crt"
	keyCAKey  = "ca.key"
)

// GetCertificate is for tls.Config; it fails until the first Sync succeeded.
func (m *CertManager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := m.cert.Load()
	if c == nil {
		return nil, errors.New("webhook: no serving certificate yet")
	}
	return c, nil
}

// Ready reports whether a certificate is being served.
func (m *CertManager) Ready() bool { return m.cert.Load() != nil }

// Run syncs now and then every interval until ctx ends, retrying failures
// sooner (from 1 s, doubling up to the interval).
func (m *CertManager) Run(ctx context.Context, interval time.Duration) {
	retry := time.Second
	for {
		wait := interval
		if err := m.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			m.Log.Error("webhook certificate sync failed", "error", err, "retry_in", retry.String())
			wait, retry = retry, min(retry*2, interval)
		} else {
			retry = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Sync brings the Secret and caBundle up to date and loads the certificate.
func (m *CertManager) Sync(ctx context.Context) error {
	var err error
	for range 5 {
		if err = m.sync(ctx); err == nil || !kube.IsConflict(err) {
			return err
		}
	}
	return err
}

func (m *CertManager) clock() time.Time {
	if m.now != nil {
		return m.now()
	}
	return time.Now()
}

func (m *CertManager) secretPath(name string) string {
	p := "/api/v1/namespaces/" + m.Namespace + "/secrets"
	if name != "" {
		p += "/" + name
	}
	return p
}

func (m *CertManager) sync(ctx context.Context) error {
	now := m.clock()
	var sec corev1.Secret
	err := m.Client.Do(ctx, http.MethodGet, m.secretPath(m.Secret), nil, &sec)
	exists := err == nil
	if err != nil && !kube.IsNotFound(err) {
		return fmt.Errorf("webhook: reading Secret %s/%s: %w", m.Namespace, m.Secret, err)
	}
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}

	// 1. The CA bundle: newest CA first, expired ones dropped.
	cas, caKey := parseCAs(sec.Data[keyCACert], sec.Data[keyCAKey])
	bundleBefore := encodeCerts(cas)
	if caKey == nil || len(cas) == 0 || renewDue(cas[0], now) {
		ca, key, err := newCA(now, m.CAValidity)
		if err != nil {
			return err
		}
		cas = append([]*x509.Certificate{ca}, cas...)
		caKey = key
		m.Log.Info("webhook CA created", "not_after", ca.NotAfter.UTC().Format(time.RFC3339))
	}
	cas = slices.DeleteFunc(cas, func(c *x509.Certificate) bool { return now.After(c.NotAfter) })
	bundle := encodeCerts(cas)
	if !exists || !bytes.Equal(bundle, bundleBefore) {
		sec.Data[keyCACert] = bundle
		sec.Data[keyCAKey] = encodeKey(caKey)
		if !exists { // a kubernetes.io/tls Secret is created with its pair
			if sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey], err = newServingCert(now, m.CertValidity, cas[0], caKey, m.Hosts); err != nil {
				return err
			}
		}
		if err := m.writeSecret(ctx, &sec, exists); err != nil {
			return err
		}
		exists = true
	}

	// 2. Publish the bundle before anything signed by a new CA is served.
	if err := m.publishBundle(ctx, bundle); err != nil {
		return err
	}

	// 3. The serving certificate: signed by the newest CA, fresh, for our hosts.
	// A certificate signed by a new CA waits until API servers have had time to
	// see the new caBundle, as long as the current one is still good.
	pair, leaf := parsePair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	usable := leaf != nil && covers(leaf, m.Hosts) && signedByAny(leaf, cas) && now.Before(leaf.NotAfter)
	byOldCA := leaf == nil || leaf.CheckSignatureFrom(cas[0]) != nil
	settled := !now.Before(created(cas[0]).Add(settle(cas[0])))
	if !usable || (renewDue(leaf, now) || byOldCA) && settled {
		certPEM, keyPEM, err := newServingCert(now, m.CertValidity, cas[0], caKey, m.Hosts)
		if err != nil {
			return err
		}
		sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey] = certPEM, keyPEM
		if err := m.writeSecret(ctx, &sec, exists); err != nil {
			return err
		}
		if pair, leaf = parsePair(certPEM, keyPEM); leaf == nil {
			return errors.New("webhook: the serving certificate just made does not parse")
		}
		m.Log.Info("webhook serving certificate issued", "not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "hosts", m.Hosts)
	}
	if old := m.cert.Swap(pair); old == nil || !sameCert(old, pair) {
		m.Log.Info("serving certificate loaded", "serial", leaf.SerialNumber.String())
		if old != nil && m.OnChange != nil {
			m.OnChange()
		}
	}
	return nil
}

func (m *CertManager) writeSecret(ctx context.Context, sec *corev1.Secret, exists bool) error {
	if !exists {
		sec.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}
		sec.ObjectMeta = metav1.ObjectMeta{Name: m.Secret, Namespace: m.Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "remora-webhook"}}
		sec.Type = corev1.SecretTypeTLS
		err := m.Client.Do(ctx, http.MethodPost, m.secretPath(""), sec, sec)
		if kube.IsConflict(err) { // AlreadyExists: another replica made it; adopt it
			return err
		}
		if err != nil {
			return fmt.Errorf("webhook: creating Secret %s/%s: %w", m.Namespace, m.Secret, err)
		}
		return nil
	}
	if err := m.Client.Do(ctx, http.MethodPut, m.secretPath(m.Secret), sec, sec); err != nil {
		if kube.IsConflict(err) {
			return err
		}
		return fmt.Errorf("webhook: updating Secret %s/%s: %w", m.Namespace, m.Secret, err)
	}
	return nil
}

// publishBundle sets caBundle on every webhook of the configuration, guarded
// by its resourceVersion so a concurrent change (a helm upgrade) is re-read.
func (m *CertManager) publishBundle(ctx context.Context, bundle []byte) error {
	path := "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/" + m.WebhookConfig
	var cfg struct {
		Metadata struct{ ResourceVersion string } `json:"metadata"`
		Webhooks []struct {
			ClientConfig struct {
				CABundle []byte `json:"caBundle"`
			} `json:"clientConfig"`
		} `json:"webhooks"`
	}
	if err := m.Client.Do(ctx, http.MethodGet, path, nil, &cfg); err != nil {
		return fmt.Errorf("webhook: reading MutatingWebhookConfiguration %s: %w", m.WebhookConfig, err)
	}
	ops := []map[string]any{{"op": "test", "path": "/metadata/resourceVersion", "value": cfg.Metadata.ResourceVersion}}
	for i, w := range cfg.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
			ops = append(ops, map[string]any{"op": "add", "path": fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i),
				"value": base64.StdEncoding.EncodeToString(bundle)})
		}
	}
	if len(ops) == 1 {
		return nil
	}
	if err := m.Client.Do(ctx, http.MethodPatch, path, ops, nil); err != nil {
		if se := (*kube.StatusError)(nil); errors.As(err, &se) && se.Code == http.StatusUnprocessableEntity {
			// The test operation failed: someone changed it meanwhile.
			return &kube.StatusError{Code: http.StatusConflict, Reason: "Conflict", Message: se.Message}
		}
		return fmt.Errorf("webhook: writing caBundle of MutatingWebhookConfiguration %s: %w", m.WebhookConfig, err)
	}
	m.Log.Info("caBundle published", "webhook_configuration", m.WebhookConfig, "cas", bytes.Count(bundle, []byte("BEGIN CERTIFICATE")))
	return nil
}

func signedByAny(c *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if c.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// created undoes backdate: the moment a certificate was made.
func created(c *x509.Certificate) time.Time {
	total := c.NotAfter.Sub(c.NotBefore)
	if total >= 11*time.Minute {
		return c.NotBefore.Add(time.Minute)
	}
	return c.NotBefore.Add(total / 11)
}

// settle is how long a new CA is published before it signs the certificate
// served: a minute (a tenth of its life, when shorter).
func settle(ca *x509.Certificate) time.Duration {
	return min(time.Minute, ca.NotAfter.Sub(created(ca))/10)
}

// renewDue is true once two thirds of the certificate's life have passed.
func renewDue(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return !now.Before(c.NotBefore.Add(life * 2 / 3))
}

func covers(c *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if c.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func parseCAs(certPEM, keyPEM []byte) ([]*x509.Certificate, *ecdsa.PrivateKey) {
	var cas []*x509.Certificate
	for rest := certPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && c.IsCA {
			cas = append(cas, c)
		}
	}
	var key *ecdsa.PrivateKey
	if b, _ := pem.Decode(keyPEM); b != nil {
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			key = k
		}
	}
	// The key must belong to the first (newest) CA.
	if key == nil || len(cas) == 0 || !key.PublicKey.Equal(cas[0].PublicKey) {
		return cas, nil
	}
	return cas, key
}

func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, *x509.Certificate) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil || len(pair.Certificate) == 0 {
		return nil, nil
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil
	}
	pair.Leaf = leaf
	return &pair, leaf
}

func encodeCerts(cs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func encodeKey(k *ecdsa.PrivateKey) []byte {
	der, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// backdate tolerates clocks a little behind ours.
func backdate(now time.Time, validity time.Duration) time.Time {
	return now.Add(-min(time.Minute, validity/10))
}

// newKey makes a key pair and a serial number for a new certificate.
func newKey() (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return key, sn, err
}

func newCA(now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, sn, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "remora-webhook-ca " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             backdate(now, validity),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func newServingCert(now time.Time, validity time.Duration, ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (certPEM, keyPEM []byte, err error) {
	key, sn, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: "remora-webhook"},
		NotBefore:    backdate(now, validity),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = hosts[0]
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), encodeKey(key), nil
}
