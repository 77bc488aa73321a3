package azblob

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// serverClock is the storage's clock, read from the Date header of its
// responses: the clock that stamps blobs' Last-Modified, which is what their
// ages must be measured against (the local clock may run fast).
type serverClock struct {
	mu   sync.Mutex
	date time.Time // the latest Date seen
	at   time.Time // when it was seen, by the local monotonic clock
}

func (c *serverClock) set(date time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.date, c.at = date, time.Now()
}

func (c *serverClock) now() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.date.IsZero() {
		return time.Time{}, false
	}
	return c.date.Add(time.Since(c.at)), true
}

// clockTransport notes the Date of every response.
type clockTransport struct {
	base  *http.Client
	clock *serverClock
}

func (t *clockTransport) Do(req *http.Request) (*http.Response, error) {
	resp, err := t.base.Do(req)
	var uerr *url.Error
	if errors.As(err, &uerr) {
		// A SAS token is in the query: never let it into an error.
		uerr.URL = req.URL.Scheme + "://" + req.URL.Host + req.URL.EscapedPath()
	}
	if err == nil {
		if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			t.clock.set(d.UTC())
		}
	}
	return resp, err
}

// Now is the storage's time: the Date of its latest response plus the time
// since, asking it (a container check) if it has not answered yet.
func (s *Storage) Now(ctx context.Context) (time.Time, error) {
	if t, ok := s.clock.now(); ok {
		return t, nil
	}
	if err := s.Check(ctx); err != nil {
		return time.Time{}, err
	}
	if t, ok := s.clock.now(); ok {
		return t, nil
	}
	return time.Time{}, errors.New("the storage's responses carry no Date header")
}
