package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TCPFault is what a TCPProxy does to a connection once it is armed.
type TCPFault int

const (
	CutConn   TCPFault = iota + 1 // drop the connection, both ways
	StallConn                     // stop passing the server's bytes, and keep the connection open
)

func (f TCPFault) String() string {
	switch f {
	case CutConn:
		return "cut"
	case StallConn:
		return "stall"
	}
	return "none"
}

// ReadAllOrHang reads r to its end, failing the test if that takes a
// minute: a download that hangs (a stalled server and no stall timeout)
// fails instead of running into the test binary's timeout.
func ReadAllOrHang(t testing.TB, r io.Reader) ([]byte, error) {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(r)
		done <- result{b, err}
	}()
	select {
	case res := <-done:
		return res.b, res.err
	case <-time.After(time.Minute):
		t.Fatal("the download hung: no error and no data for a minute")
		return nil, nil
	}
}

// TCPProxy forwards TCP connections to a server, for protocols the HTTP
// FaultProxy cannot carry (SFTP, SMB, FTP's control connection). Armed, it
// passes a number of the server's bytes more, on whichever connections carry
// them, then cuts or stalls the connection that carried the last one, once.
type TCPProxy struct {
	Addr string // host:port to give the client

	mu       sync.Mutex
	fault    TCPFault
	left     int64 // server bytes to pass before the fault; meaningful when fault != 0
	fired    int
	accepted int
	conns    []net.Conn
	stop     chan struct{}
	held     chan struct{} // closed by Release; nil when not held
}

// StartTCPProxy proxies to target (host:port) until the test ends.
func StartTCPProxy(t testing.TB, target string) *TCPProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TCPProxy{Addr: ln.Addr().String(), stop: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		close(p.stop)
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.accepted++
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			wg.Go(func() { io.Copy(up, c); up.Close() })
			wg.Go(func() { p.serve(c, up) })
		}
	})
	return p
}

// Arm makes the proxy pass after more bytes of the servers' answers, then
// inject fault into the connection that carries the last of them.
func (p *TCPProxy) Arm(fault TCPFault, after int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.left = fault, after
}

// Hold stops passing the servers' answers, on every connection, until
// Release: the client's requests go on arriving at the server, unanswered.
func (p *TCPProxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// Release passes the answers Hold kept back, and those that follow.
func (p *TCPProxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// wait returns when the proxy is not held, or stops.
func (p *TCPProxy) wait() {
	p.mu.Lock()
	held := p.held
	p.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-p.stop:
		}
	}
}

// Fired is how many faults were injected.
func (p *TCPProxy) Fired() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fired
}

// Accepted is how many connections the proxy took.
func (p *TCPProxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// serve passes the server's bytes to the client until the connection ends
// or a fault is due.
func (p *TCPProxy) serve(c, up net.Conn) {
	defer c.Close()
	defer up.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			p.wait()
			pass, fault := p.take(int64(n))
			if _, werr := c.Write(buf[:pass]); werr != nil {
				return
			}
			switch fault {
			case CutConn:
				return
			case StallConn:
				<-p.stop // silent, and open, until the test ends
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// take counts n bytes of the server's: it returns how many of them pass, and
// the fault to inject after them, if one is due.
func (p *TCPProxy) take(n int64) (int64, TCPFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fault == 0 {
		return n, 0
	}
	if n < p.left {
		p.left -= n
		return n, 0
	}
	pass, f := p.left, p.fault
	p.fault, p.left = 0, 0
	p.fired++
	return pass, f
}
