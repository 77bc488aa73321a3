package control

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Agent is what the control socket serves.
type Agent interface {
	// Status is the agent's state now.
	Status() Status
	// StartBackup starts a backup unless one is running.
	StartBackup() Started
	// Event is run n's progress now or, once it has ended, its result (Done
	// set). done is closed when the run ends. ok is false when run n is
	// neither running nor among the recent results.
	Event(n int) (ev Event, done <-chan struct{}, ok bool)
}

// EventInterval is how often a run's progress stream sends an event.
const EventInterval = time.Second

// Listen serves a on the unix socket at path, readable by the socket's owner
// only. A stale socket file is replaced; a socket another agent answers on,
// or a file that is not a socket, is an error. Close stops serving and
// removes the socket.
func Listen(path string, a Agent) (io.Closer, error) {
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
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status())
	})
	mux.HandleFunc("POST /backup", func(w http.ResponseWriter, r *http.Request) {
		s := a.StartBackup()
		code := http.StatusAccepted
		if !s.Started {
			code = http.StatusConflict
		}
		writeJSON(w, code, s)
	})
	mux.HandleFunc("GET /runs/{n}/events", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		streamRun(w, r, a, n)
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

// streamRun writes run n's progress at once and every EventInterval until it
// ends, then its result: one JSON object a line.
func streamRun(w http.ResponseWriter, req *http.Request, a Agent, n int) {
	ev, done, ok := a.Event(n)
	if !ok {
		http.Error(w, fmt.Sprintf("no run %d", n), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	send := func(ev Event) {
		enc.Encode(ev)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	send(ev)
	if ev.Done {
		return
	}
	tick := time.NewTicker(EventInterval)
	defer tick.Stop()
	for {
		select {
		case <-req.Context().Done():
			return
		case <-done:
			if ev, _, ok := a.Event(n); ok {
				send(ev)
			}
			return
		case <-tick.C:
			if ev, _, ok := a.Event(n); ok && !ev.Done {
				send(ev)
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
