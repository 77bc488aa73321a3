package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"remora.dev/remora/agent/backup"
)

// Status is what `remora status` shows.
type Status struct {
	Namespace        string                   `json:"namespace"`
	Workload         string                   `json:"workload"`
	Driver           string                   `json:"driver"`
	Schedule         string                   `json:"schedule"`
	ScheduleExpanded string                   `json:"schedule_expanded"`
	NextRun          time.Time                `json:"next_run"`
	Retention        string                   `json:"retention"`
	Storage          []string                 `json:"storage"`
	ConfigError      string                   `json:"config_error,omitempty"`
	Running          *RunningStatus           `json:"running,omitempty"`
	Last             *RunResult               `json:"last,omitempty"`
	LastSuccess      time.Time                `json:"last_success,omitzero"`
	SkippedRuns      int                      `json:"skipped_runs"`
	Progress         *backup.ProgressSnapshot `json:"-"`
}

// RunningStatus describes the backup in progress.
type RunningStatus struct {
	Run      int                     `json:"run"`
	Trigger  string                  `json:"trigger"`
	Started  time.Time               `json:"started"`
	Seconds  float64                 `json:"seconds"`
	Progress backup.ProgressSnapshot `json:"progress"`
}

// Progress is a running backup's progress.
type Progress = backup.ProgressSnapshot

// Event is one line of a run's progress stream; the last has Done set.
type Event struct {
	Run      int                     `json:"run"`
	Seconds  float64                 `json:"seconds"`
	Progress backup.ProgressSnapshot `json:"progress"`
	Done     bool                    `json:"done,omitempty"`
	Result   *RunResult              `json:"result,omitempty"`
}

// Status reads the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	driver := a.cfg.Driver
	if a.spec.Driver != "" {
		driver = a.spec.Driver
	}
	s := Status{
		Namespace: a.cfg.Namespace, Workload: a.cfg.Workload, Driver: driver,
		Schedule: a.spec.Schedule.String(), ScheduleExpanded: a.spec.Schedule.Expanded(), NextRun: a.next,
		Retention: a.spec.Retention.String(), Storage: a.destLabel, Last: a.last, LastSuccess: a.lastOK, SkippedRuns: a.skipped,
	}
	if a.specErr != nil {
		s.ConfigError = a.specErr.Error()
	}
	if r := a.current; r != nil {
		s.Running = &RunningStatus{Run: r.n, Trigger: r.trigger, Started: r.started, Seconds: a.clock.Now().Sub(r.started).Seconds(), Progress: r.progress.Snapshot()}
	}
	return s
}

// listenControl opens the control socket. A stale socket file is replaced;
// a socket another agent answers on is an error.
func (a *Agent) listenControl() (io.Closer, error) {
	path := a.cfg.Socket
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: a file that is not a socket is in the way", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another agent is running", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status())
	})
	mux.HandleFunc("POST /backup", func(w http.ResponseWriter, r *http.Request) {
		run, started := a.trigger(a.runContext(), "request")
		code := http.StatusAccepted
		if !started {
			code = http.StatusConflict
		}
		writeJSON(w, code, map[string]any{"run": run.n, "started": started, "since": run.started})
	})
	mux.HandleFunc("GET /runs/{n}/events", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		a.streamRun(w, r, n)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return closerFunc(func() error {
		err := srv.Close()
		os.Remove(path)
		return err
	}), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// runContext is the context runs started through the socket get: they stop
// when the agent stops.
func (a *Agent) runContext() context.Context {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.runCtx == nil {
		return context.Background()
	}
	return a.runCtx
}

// streamRun writes a progress event every second until run n ends, then its
// result.
func (a *Agent) streamRun(w http.ResponseWriter, req *http.Request, n int) {
	a.mu.Lock()
	r := a.current
	last := a.last
	a.mu.Unlock()
	enc := json.NewEncoder(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	if r == nil || r.n != n {
		if last != nil && last.Run == n {
			enc.Encode(Event{Run: n, Done: true, Result: last})
			return
		}
		http.Error(w, fmt.Sprintf("no run %d", n), http.StatusNotFound)
		return
	}
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-req.Context().Done():
			return
		case <-r.done:
			res := r.result
			enc.Encode(Event{Run: n, Seconds: res.Seconds, Progress: r.progress.Snapshot(), Done: true, Result: &res})
			flush()
			return
		case <-tick.C:
			enc.Encode(Event{Run: n, Seconds: a.clock.Now().Sub(r.started).Seconds(), Progress: r.progress.Snapshot()})
			flush()
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (a *Agent) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		ready := a.ready
		a.mu.Unlock()
		if !ready {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}

func listenTCP(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// Client talks to an agent over its control socket.
type Client struct {
	http *http.Client
}

// ErrNoAgent is wrapped when no agent answers on the socket.
var ErrNoAgent = errors.New("no agent answers on the control socket")

// Dial returns a client for the agent on socket, checking that it answers.
func Dial(socket string) (*Client, error) {
	c := &Client{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
	if _, err := os.Stat(socket); err != nil {
		return nil, fmt.Errorf("%w (%s): %v", ErrNoAgent, socket, err)
	}
	return c, nil
}

// Status asks the agent for its status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, "GET", "/status", nil, &s)
}

// Backup asks for a backup now. It returns the run's number and whether it
// is new (false: one was already running, and that one is returned).
func (c *Client) Backup(ctx context.Context) (int, bool, time.Time, error) {
	var out struct {
		Run     int       `json:"run"`
		Started bool      `json:"started"`
		Since   time.Time `json:"since"`
	}
	err := c.do(ctx, "POST", "/backup", map[int]bool{http.StatusConflict: true}, &out)
	return out.Run, out.Started, out.Since, err
}

// Follow calls fn for each progress event of run n until it ends, and
// returns its result.
func (c *Client) Follow(ctx context.Context, n int, fn func(Event)) (*RunResult, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://agent/runs/%d/events", n), nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoAgent, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("agent: %s", b)
	}
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

func (c *Client) do(ctx context.Context, method, path string, okCodes map[int]bool, out any) error {
	req, _ := http.NewRequestWithContext(ctx, method, "http://agent"+path, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoAgent, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && !okCodes[resp.StatusCode] {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("agent: %s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
