package storage

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// DateClock is an HTTP storage server's clock, read from the Date header of
// its responses: the clock that stamps its objects, which their ages must be
// measured against (the local clock may run fast). The zero value is ready;
// a backend notes every response (RoundTripper, or Note) and implements
// Clock with Now.
type DateClock struct {
	mu   sync.Mutex
	date time.Time // the latest Date seen
	at   time.Time // when it was seen, by the local monotonic clock
}

// Note takes the Date of a response, if it has one.
func (c *DateClock) Note(resp *http.Response) {
	d, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.date, c.at = d.UTC(), time.Now()
}

// RoundTripper wraps base so that every response is noted.
func (c *DateClock) RoundTripper(base http.RoundTripper) http.RoundTripper {
	return dateTransport{base, c}
}

type dateTransport struct {
	base  http.RoundTripper
	clock *DateClock
}

func (t dateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil {
		t.clock.Note(resp)
	}
	return resp, err
}

// Now is the server's time: the Date of its latest response plus the time
// since, calling check (a request to the server) if it has not answered yet.
func (c *DateClock) Now(ctx context.Context, check func(context.Context) error) (time.Time, error) {
	if t, ok := c.now(); ok {
		return t, nil
	}
	if err := check(ctx); err != nil {
		return time.Time{}, err
	}
	if t, ok := c.now(); ok {
		return t, nil
	}
	return time.Time{}, errors.New("the storage's responses carry no Date header")
}

func (c *DateClock) now() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.date.IsZero() {
		return time.Time{}, false
	}
	return c.date.Add(time.Since(c.at)), true
}
