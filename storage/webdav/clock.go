package webdav

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// serverClock is the server's clock, read from the Date header of its
// responses: the clock that stamps the files' getlastmodified, which ages
// must be measured against (the local clock may run fast).
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
	base  http.RoundTripper
	clock *serverClock
}

func (t *clockTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil {
		if d, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			t.clock.set(d.UTC())
		}
	}
	return resp, err
}

// Now is the server's time: the Date of its latest response plus the time
// since, asking it (a Check) if it has not answered yet.
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
	return time.Time{}, errors.New("the WebDAV server's responses carry no Date header")
}
