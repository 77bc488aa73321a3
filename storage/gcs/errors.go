package gcs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"cloud.google.com/go/auth"
	gcs "cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"

	"remora.dev/remora/internal/errs"
)

// err turns a client library error into one line that names the storage,
// the operation and what to fix, never a credential.
func (s *Storage) err(op, key string, err error) error {
	what := op
	if key != "" {
		what += " " + key
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("storage %s: %s: %w", s, what, err)
	}
	if errors.Is(err, gcs.ErrBucketNotExist) {
		return s.noBucket()
	}
	var aerr *auth.Error
	if errors.As(err, &aerr) {
		// The token endpoint refused the key: deleted, disabled or wrong.
		code := 0
		if aerr.Response != nil {
			code = aerr.Response.StatusCode
		}
		return fmt.Errorf("storage %s: %s: the credentials were refused (token request: HTTP %d): check %s", s, what, code, s.creds)
	}
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return s.apiErr(what, gerr)
	}
	var nerr net.Error
	var dnsErr *net.DNSError
	if errors.As(err, &nerr) || errors.As(err, &dnsErr) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("storage %s: %s: cannot reach %s: %v: check the endpoint and the network", s, what, s.host(), errs.Root(err))
	}
	return fmt.Errorf("storage %s: %s: %w", s, what, err)
}

// apiErr is the error for an answer of the JSON API.
func (s *Storage) apiErr(what string, gerr *googleapi.Error) error {
	msg := gerr.Message
	if msg == "" {
		msg = gerr.Body
	}
	switch gerr.Code {
	case 401:
		return fmt.Errorf("storage %s: %s: the credentials were refused (401): check %s", s, what, s.creds)
	case 403:
		return fmt.Errorf("storage %s: %s: access denied (403: %s): grant %s the Storage Object Admin role on bucket %q, or one with storage.objects.create, get, list and delete", s, what, msg, s.creds, s.bucket)
	case 404:
		return s.noBucket()
	}
	return fmt.Errorf("storage %s: %s: HTTP %d: %s", s, what, gerr.Code, msg)
}

func (s *Storage) noBucket() error {
	return fmt.Errorf("storage %s: bucket %q does not exist: create it or fix the storage URL", s, s.bucket)
}

// host is where requests go, for errors.
func (s *Storage) host() string {
	if s.endpoint != "" {
		return s.endpoint
	}
	return "storage.googleapis.com"
}
