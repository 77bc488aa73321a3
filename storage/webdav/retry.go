package webdav

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/storage"
)

// retry sends a request until it gets an answer that is not a transient
// fault (a dropped connection, no answer within the stall time, 408, 429,
// 5xx), or s.xfer.Retries more attempts have failed, waiting 1 s, 2 s, 4 s,
// ... (with jitter, at most 30 s) between attempts, each logged. send makes
// and sends attempt n's request (from 0), so its body, if any, is made
// afresh: only requests whose body can be made again come here. PUT does
// not: a streamed object cannot be sent twice.
func (s *Storage) retry(ctx context.Context, op string, send func(ctx context.Context, n int) (*http.Response, error)) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := send(ctx, attempt)
		fault := err
		if err != nil && lasting(err) {
			fault = nil
		}
		if err == nil && retryStatus(resp.StatusCode) {
			fault = unexpected(resp)
		}
		if fault == nil || ctx.Err() != nil || attempt >= s.xfer.Retries {
			if err != nil && attempt > 0 {
				err = &storage.RetriedError{Err: err, N: attempt + 1}
			}
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		wait := backoff(attempt)
		wait = wait/2 + rand.N(wait/2+1)
		s.log.Warn("storage request failed, retrying", "storage", s.display, "op", op, "attempt", attempt+1,
			"of", s.xfer.Retries+1, "retry_in", wait.Round(time.Millisecond).String(), "error", errs.Root(fault).Error())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// lasting tells the request errors that another attempt gets again: a host
// name that does not resolve, a certificate that is not trusted.
func lasting(err error) bool {
	var dns *net.DNSError
	var cert *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	return errors.As(err, &dns) && dns.IsNotFound || errors.As(err, &cert) || errors.As(err, &unknown) || errors.As(err, &host)
}
