// Package certpool reads the CA files that the storage, the notifier and the
// Kubernetes client trust.
package certpool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// FromFile reads the PEM certificates in path into a pool. A file with no
// certificate is an error.
func FromFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
