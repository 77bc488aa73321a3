package webdav

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"remora.dev/remora/storage"
)

// backoffUnit is the first wait before another attempt; it doubles each
// time.
var backoffUnit = time.Second

// backoff is the wait after the n-th failed attempt (from 0): 1 s, 2 s, 4 s,
// ... at most 30 s.
func backoff(n int) time.Duration { return storage.Backoff(n) / time.Second * backoffUnit }

func checkKey(key string) error { return storage.CheckKey(key) }

// Open returns the object's content. A download that breaks or stalls part
// way resumes from where it stopped, with a range request that only the same
// version of the object (its ETag) may answer (storage.Download).
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	return storage.Download{
		Storage: s, Key: key, Transfer: s.xfer, Log: s.log, Backoff: backoff,
		OpenAt:    s.openAt(key),
		Retryable: transient,
		NotFound:  func(err error) bool { return hasStatus(err, http.StatusNotFound) },
		Err:       func(err error) error { return s.err("get", key, err) },
	}.Start(ctx)
}

// openAt GETs the object from off. A resumption asks If-Match the first
// answer's ETag when it was strong (If-Match takes no weak one).
func (s *Storage) openAt(key string) func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
	strong := false
	return func(ctx context.Context, off int64, pin storage.Version) (io.ReadCloser, storage.Version, error) {
		req, err := s.newRequest(ctx, http.MethodGet, key, nil)
		if err != nil {
			return nil, storage.Version{}, err
		}
		if off > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
			if strong {
				req.Header.Set("If-Match", pin.ID)
			}
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return nil, storage.Version{}, err
		}
		want := http.StatusOK
		if off > 0 {
			want = http.StatusPartialContent
		}
		switch {
		case off > 0 && (resp.StatusCode == http.StatusPreconditionFailed || resp.StatusCode == http.StatusOK):
			resp.Body.Close()
			return nil, storage.Version{}, storage.ErrChanged
		case resp.StatusCode != want:
			resp.Body.Close()
			return nil, storage.Version{}, unexpected(resp)
		}
		if off == 0 {
			strong = strings.HasPrefix(resp.Header.Get("ETag"), `"`)
		}
		return resp.Body, storage.Version{ID: version(resp), Size: resp.ContentLength}, nil
	}
}

// transient tells the faults worth another attempt: the network's, and the
// server's 408, 429 and 5xx answers; not its other answers.
func transient(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return retryStatus(se.code)
	}
	return !lasting(err)
}

func retryStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 && code != http.StatusInsufficientStorage
}

// version is what tells a version of an object from a replacement: its
// ETag, else its time and size. A fresh file's ETag may be weak (Apache
// weakens those written in the last second), which If-Match does not take,
// so a resumed answer's version is also compared with the first, with the
// weakness ignored: the same file's ETag turns strong a second later.
func version(resp *http.Response) string {
	if e := resp.Header.Get("ETag"); e != "" {
		return strings.TrimPrefix(e, "W/")
	}
	size := resp.Header.Get("Content-Length")
	if cr := resp.Header.Get("Content-Range"); cr != "" {
		size = cr[strings.LastIndex(cr, "/")+1:]
	}
	return resp.Header.Get("Last-Modified") + " " + size
}
