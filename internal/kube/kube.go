// Package kube is the small Kubernetes API client the webhook needs: read and
// write one Secret, update one MutatingWebhookConfiguration, and ask the
// server's version. It speaks JSON over HTTPS with the pod's service-account
// token, re-read on every request because the kubelet rotates it.
//
// client-go would do the same, but linking it registers every API group's
// types at start-up in every process of the one remora binary, injected
// sidecars included, whose idle memory is budgeted to a few MiB.
package kube

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"remora.dev/remora/internal/certpool"
)

// In-cluster locations of the service account's credentials.
const (
	TokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	CAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// Client calls one API server.
type Client struct {
	server    string
	tokenFile string
	hc        *http.Client
}

// Config says where the API server is and how to trust and authenticate to it.
// Empty fields take the in-cluster values.
type Config struct {
	Server    string // https://host:port; default from KUBERNETES_SERVICE_HOST/PORT
	TokenFile string // bearer token, re-read on every request
	CAFile    string // PEM bundle that signs the server's certificate
}

// New returns a client, failing when the in-cluster defaults are missing.
func New(c Config) (*Client, error) {
	if c.Server == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("kube: not running in a cluster (KUBERNETES_SERVICE_HOST unset) and no API server given")
		}
		c.Server = "https://" + net.JoinHostPort(host, port)
	}
	if c.TokenFile == "" {
		c.TokenFile = TokenFile
	}
	if c.CAFile == "" {
		c.CAFile = CAFile
	}
	pool, err := certpool.FromFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("kube: API server CA: %w", err)
	}
	if _, err := os.Stat(c.TokenFile); err != nil {
		return nil, fmt.Errorf("kube: token: %w", err)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{server: strings.TrimRight(c.Server, "/"), tokenFile: c.TokenFile, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// StatusError is a response other than 2xx, with the API server's message.
type StatusError struct {
	Code    int
	Reason  string
	Message string
}

func (e *StatusError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("kube: %d %s: %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("kube: %d %s", e.Code, http.StatusText(e.Code))
}

// IsNotFound and IsConflict classify an error from the client.
func IsNotFound(err error) bool { return code(err) == http.StatusNotFound }
func IsConflict(err error) bool { return code(err) == http.StatusConflict }

func code(err error) int {
	var s *StatusError
	if errors.As(err, &s) {
		return s.Code
	}
	return 0
}

// Do sends body (JSON-encoded unless nil) to path and decodes the answer into
// out (when not nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, rd)
	if err != nil {
		return err
	}
	tok, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return fmt.Errorf("kube: token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Accept", "application/json")
	if body != nil {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/json-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("kube: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("kube: %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var st struct{ Reason, Message string }
		_ = json.Unmarshal(b, &st)
		return &StatusError{Code: resp.StatusCode, Reason: st.Reason, Message: st.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("kube: %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// Version is the server's major and minor version (GET /version).
func (c *Client) Version(ctx context.Context) (major, minor int, err error) {
	var v struct{ Major, Minor, GitVersion string }
	if err := c.Do(ctx, http.MethodGet, "/version", nil, &v); err != nil {
		return 0, 0, err
	}
	return ParseVersion(v.Major, v.Minor, v.GitVersion)
}

// ParseVersion reads the /version fields; some distributions write the minor
// as "29+", and a few leave both empty but set gitVersion v1.29.3-....
func ParseVersion(major, minor, git string) (int, int, error) {
	num := func(s string) (int, error) { return strconv.Atoi(strings.TrimRight(s, "+")) }
	ma, err1 := num(major)
	mi, err2 := num(minor)
	if err1 == nil && err2 == nil {
		return ma, mi, nil
	}
	parts := strings.SplitN(strings.TrimPrefix(git, "v"), ".", 3)
	if len(parts) >= 2 {
		ma, err1 = num(parts[0])
		mi, err2 = num(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
		if err1 == nil && err2 == nil {
			return ma, mi, nil
		}
	}
	return 0, 0, fmt.Errorf("kube: unreadable server version %q.%q (%s)", major, minor, git)
}
