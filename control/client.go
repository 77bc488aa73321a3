package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

// Client talks to an agent over its control socket.
type Client struct {
	http *http.Client
}

// ErrNoAgent is wrapped when no agent answers on the socket.
var ErrNoAgent = errors.New("no agent answers on the control socket")

// Dial returns a client for the agent on socket. It fails with ErrNoAgent
// when there is no socket file; whether an agent answers on it shows on the
// first request, which then fails with ErrNoAgent too.
func Dial(socket string) (*Client, error) {
	if _, err := os.Stat(socket); err != nil {
		return nil, fmt.Errorf("%w (%s): %v", ErrNoAgent, socket, err)
	}
	return &Client{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}, nil
}

// Status asks the agent for its status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, "GET", "/status", http.StatusOK, &s)
}

// Backup asks for a backup now. When one is running already, that one is
// returned with Started false.
func (c *Client) Backup(ctx context.Context) (Started, error) {
	var s Started
	return s, c.do(ctx, "POST", "/backup", http.StatusConflict, &s)
}

// Follow calls fn for each progress event of run n until it ends, and
// returns its result.
func (c *Client) Follow(ctx context.Context, n int, fn func(Event)) (*RunResult, error) {
	resp, err := c.request(ctx, "GET", fmt.Sprintf("/runs/%d/events", n), 0)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			return nil, fmt.Errorf("agent: the progress stream ended early: %v", err)
		}
		fn(ev)
		if ev.Done {
			return ev.Result, nil
		}
	}
}

// do sends a request and decodes its JSON answer; alsoOK is a status code
// besides 2xx whose body is an answer too.
func (c *Client) do(ctx context.Context, method, path string, alsoOK int, out any) error {
	resp, err := c.request(ctx, method, path, alsoOK)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *Client) request(ctx context.Context, method, path string, alsoOK int) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoAgent, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode != alsoOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("agent: %s: %s", resp.Status, b)
	}
	return resp, nil
}
