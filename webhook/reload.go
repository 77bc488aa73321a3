package webhook

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"remora.dev/remora/internal/watch"
)

// reloadPoll is how often Watch re-reads the key pair when no change was
// seen, a safety net for a lost or impossible watch.
const reloadPoll = time.Minute

// CertReloader serves a key pair from files and picks up new ones (a
// renewed Secret, a cert-manager rotation) without a restart.
type CertReloader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
	log               *slog.Logger
	// OnChange, when set, is called after a different certificate is loaded.
	OnChange func()
}

// NewCertReloader reads the pair once, failing fast on a bad one.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	c := &CertReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CertReloader) load() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("webhook: TLS key pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert.Store(&pair)
	return nil
}

// GetCertificate is for tls.Config.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// Ready reports whether a certificate is being served: always, once
// NewCertReloader succeeded.
func (c *CertReloader) Ready() bool { return c.cert.Load() != nil }

// Watch reloads the pair when the directory of either file changes (Secret
// volumes swap a ..data symlink), and every minute as a safety net, until ctx
// ends.
func (c *CertReloader) Watch(ctx context.Context) {
	dirs := slices.Compact([]string{filepath.Dir(c.certFile), filepath.Dir(c.keyFile)})
	watch.Dirs(ctx, dirs, reloadPoll, c.log, c.reload)
}

// reload reads the pair again, keeping the current one when the files are
// bad, and calls OnChange when a different certificate was loaded.
func (c *CertReloader) reload() {
	old := c.cert.Load()
	if err := c.load(); err != nil {
		if c.log != nil {
			c.log.Error("keeping the current certificate", "error", err)
		}
		return
	}
	if sameCert(old, c.cert.Load()) {
		return
	}
	if c.log != nil {
		c.log.Info("serving certificate reloaded")
	}
	if c.OnChange != nil {
		c.OnChange()
	}
}

// sameCert reports whether a and b have the same leaf certificate.
func sameCert(a, b *tls.Certificate) bool {
	return a != nil && b != nil && len(a.Certificate) > 0 && len(b.Certificate) > 0 && string(a.Certificate[0]) == string(b.Certificate[0])
}
