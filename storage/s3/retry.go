package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"time"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/errs"
	"remora.dev/remora/storage"
)

// backoffUnit is the first wait between attempts; it doubles each time.
var backoffUnit = time.Second

// backoff is the wait after the n-th failed attempt (from 0): 1 s, 2 s, 4 s,
// ... at most 30 s.
func backoff(n int) time.Duration { return storage.Backoff(n) / time.Second * backoffUnit }

// errStalled is why an attempt was cancelled: no data moved for the timeout.
var errStalled = storage.ErrStalled

// retryable tells the faults worth another attempt (the network, a stall,
// the server's 5xx, 408 and 429 answers, and S3's SlowDown-style codes) from
// those that will not change (access denied, no such bucket, bad request).
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errStalled) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && (resp.StatusCode != 0 || resp.Code != "") {
		switch resp.StatusCode {
		case 408, 429, 499, 500, 502, 503, 504, 520:
			return true
		}
		switch resp.Code {
		case "RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "SlowDownRead", "SlowDownWrite", "InternalError",
			"ServiceUnavailable", "ExpiredToken", "RequestError", "Throttling", "ThrottlingException":
			return true
		}
		return false
	}
	var nerr net.Error
	var uerr *url.Error
	return errors.As(err, &nerr) || errors.As(err, &uerr) || errors.Is(err, context.DeadlineExceeded)
}

// retry runs fn until it succeeds, fails for good, or s.xfer.Retries more attempts
// have failed, waiting 1 s, 2 s, 4 s, ... (with jitter, at most 30 s) between
// attempts, each logged to the storage's logger. Each attempt gets its own
// context and its own reader of body (when not nil: the transport of an
// abandoned attempt may still be reading its reader), watched: an attempt
// whose body is not read for s.xfer.Stall, or which has no answer s.xfer.Stall after
// the last read, is cancelled and counts as a transient fault.
func (s *Storage) retry(ctx context.Context, op string, body []byte, fn func(ctx context.Context, body io.Reader) error) error {
	var err error
	for attempt := 0; ; attempt++ {
		err = s.attempt(ctx, body, fn)
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return err
		}
		if attempt >= s.xfer.Retries {
			if attempt > 0 {
				return &storage.RetriedError{Err: err, N: attempt + 1}
			}
			return err
		}
		wait := backoff(attempt)
		wait = wait/2 + rand.N(wait/2+1)
		s.log.Warn("storage request failed, retrying", "storage", s.display, "op", op, "attempt", attempt+1,
			"of", s.xfer.Retries+1, "retry_in", wait.Round(time.Millisecond).String(), "error", errs.Root(err).Error())
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

func (s *Storage) attempt(ctx context.Context, body []byte, fn func(ctx context.Context, body io.Reader) error) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if body == nil {
		return fn(actx, nil)
	}
	// The watch covers the whole request, not only reading the body: the
	// transport may have read all of it and still be blocked writing its
	// last chunk to a server that reads nothing, and its response-header
	// timeout only starts once the write is done.
	w := &watched{r: bytes.NewReader(body)}
	w.dog = storage.Watch(s.xfer.Stall, func() { cancel(errStalled) })
	defer w.dog.Stop()
	err := fn(actx, w)
	if err != nil && errors.Is(context.Cause(actx), errStalled) && ctx.Err() == nil {
		return errStalled
	}
	return err
}

// watched is a request body that tells its watchdog when it is read.
type watched struct {
	r   *bytes.Reader // read by the transport's goroutine only
	dog *storage.Watchdog
}

func (w *watched) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.dog.Kick()
	}
	return n, err
}

// Seek lets minio-go rewind the body (and treat it as resendable).
func (w *watched) Seek(off int64, whence int) (int64, error) { return w.r.Seek(off, whence) }
