package azblob

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"remora.dev/remora/storage"
)

// clockTransport notes the Date of every response.
type clockTransport struct {
	base  *http.Client
	clock *storage.DateClock
}

func (t *clockTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := t.base.Do(req)
	var uerr *url.Error
	if errors.As(err, &uerr) {
		// A SAS token is in the query: never let it into an error.
		uerr.URL = req.URL.Scheme + "://" + req.URL.Host + req.URL.EscapedPath()
	}
	if err == nil {
		t.clock.Note(resp)
	}
	return resp, err
}

// Now is the storage's time by its own clock (the Date of its responses),
// which stamps blobs' Last-Modified.
func (s *Storage) Now(ctx context.Context) (time.Time, error) { return s.clock.Now(ctx, s.Check) }
