package webhook

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// Recycler retires kept-alive connections that were opened with an older
// serving certificate, so that clients (API servers reuse a connection for as
// long as it is busy) handshake again and check the new certificate against
// the caBundle soon, not some day later. It never closes a connection under a
// client: the next response on an old connection carries "Connection: close"
// (closing an idle connection could race with a request being sent on it, and
// an API server does not resend a failed admission request, it skips the
// webhook). Install ConnState and ConnContext on the http.Server, wrap the
// handler with Wrap, and call Rotated after a change.
type Recycler struct {
	mu    sync.Mutex
	gen   int
	conns map[net.Conn]int // connection → generation it was opened in
}

type connKey struct{}

// ConnState tracks connections; see http.Server.ConnState.
func (r *Recycler) ConnState(c net.Conn, st http.ConnState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		r.conns = map[net.Conn]int{}
	}
	switch st {
	case http.StateNew:
		r.conns[c] = r.gen
	case http.StateHijacked, http.StateClosed:
		delete(r.conns, c)
	}
}

// ConnContext makes the connection known to Wrap; see http.Server.ConnContext.
func (r *Recycler) ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Wrap asks the client to close a connection from an older generation after
// this response.
func (r *Recycler) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if c, ok := req.Context().Value(connKey{}).(net.Conn); ok {
			r.mu.Lock()
			gen, known := r.conns[c]
			old := known && gen != r.gen
			r.mu.Unlock()
			if old {
				w.Header().Set("Connection", "close")
			}
		}
		h.ServeHTTP(w, req)
	})
}

// Rotated starts a new generation: connections opened before it close after
// their next response.
func (r *Recycler) Rotated() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
}
