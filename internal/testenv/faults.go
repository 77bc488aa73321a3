package testenv

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault is what the proxy does to one request.
type Fault int

const (
	Pass          Fault = iota
	Answer500           // 500 InternalError, request body unread
	Answer503           // 503 SlowDown
	CutRequest          // read part of the request body, then drop the connection
	StallBefore         // read nothing and answer nothing until the client gives up
	CutResponse         // forward, then drop the connection part way through the response body
	StallResponse       // forward, then stop sending part way through the response body
	Trickle             // forward the response body at one byte a second (the headers at once)
)

var faultNames = [...]string{"pass", "500", "503", "cut request", "stall", "cut response", "stall response", "trickle"}

func (f Fault) String() string { return faultNames[f] }

// FaultProxy is an HTTP proxy between a client and an S3 server that injects
// faults into chosen requests: error answers, dropped connections and stalls,
// before or in the middle of a body. Rule decides per request; the Host header
// passes unchanged, so SigV4 signatures stay valid.
type FaultProxy struct {
	Endpoint string // host:port to give the client
	mu       sync.Mutex
	rule     func(r *http.Request, n int) Fault
	n        int
	injected map[Fault]int
	stop     chan struct{}
}

// StartFaultProxy proxies to the S3 server at target (host:port) until the
// test ends. Initially every request passes.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	p := &FaultProxy{injected: map[Fault]int{}, stop: make(chan struct{})}
	up := &url.URL{Scheme: "http", Host: target}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			f, _ := resp.Request.Context().Value(faultKey{}).(Fault)
			if (f == CutResponse || f == StallResponse) && resp.ContentLength != 0 {
				resp.Body = &faultyBody{ReadCloser: resp.Body, fault: f, after: 256 << 10, stop: p.stop, ctx: resp.Request.Context()}
			}
			if f == Trickle {
				resp.Body = &trickleBody{ReadCloser: resp.Body, stop: p.stop, ctx: resp.Request.Context()}
			}
			return nil
		},
		FlushInterval: -1, // what is read goes out at once: a trickle arrives as one
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Endpoint = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := p.decide(r)
		switch f {
		case Answer500, Answer503:
			code, name := 500, "InternalError"
			if f == Answer503 {
				code, name = 503, "SlowDown"
			}
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(code)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+name+`</Code><Message>injected by the test</Message></Error>`)
			return
		case CutRequest:
			io.CopyN(io.Discard, r.Body, 64<<10)
			panic(http.ErrAbortHandler) // drops the connection
		case StallBefore:
			select {
			case <-r.Context().Done():
			case <-p.stop:
			}
			return
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), faultKey{}, f)))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(p.stop)
		srv.Close()
	})
	return p
}

type faultKey struct{}

// Set replaces the rule; n counts the requests the proxy has seen, from 1.
func (p *FaultProxy) Set(rule func(r *http.Request, n int) Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = rule
}

func (p *FaultProxy) decide(r *http.Request) Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	if p.rule == nil {
		return Pass
	}
	f := p.rule(r, p.n)
	if f != Pass {
		p.injected[f]++
	}
	return f
}

// Injected counts the faults injected so far, by kind.
func (p *FaultProxy) Injected() map[Fault]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[Fault]int{}
	for k, v := range p.injected {
		out[k] = v
	}
	return out
}

// Total is the number of faults injected so far.
func (p *FaultProxy) Total() int {
	n := 0
	for _, v := range p.Injected() {
		n += v
	}
	return n
}

// faultyBody passes the first bytes of a response, then fails or stalls.
type faultyBody struct {
	io.ReadCloser
	fault Fault
	after int64
	read  atomic.Int64
	stop  chan struct{}
	ctx   context.Context
}

func (b *faultyBody) Read(p []byte) (int, error) {
	left := b.after - b.read.Load()
	if left <= 0 {
		if b.fault == StallResponse {
			select {
			case <-b.ctx.Done():
			case <-b.stop:
			case <-time.After(10 * time.Minute):
			}
		}
		return 0, errors.New("connection dropped by the test")
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.ReadCloser.Read(p)
	b.read.Add(int64(n))
	return n, err
}

// trickleBody passes its first byte at once, then one byte a second.
type trickleBody struct {
	io.ReadCloser
	started bool
	stop    chan struct{}
	ctx     context.Context
}

func (b *trickleBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.started {
		select {
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		case <-b.stop:
			return 0, errors.New("proxy stopped")
		case <-time.After(time.Second):
		}
	}
	b.started = true
	return b.ReadCloser.Read(p[:1])
}
