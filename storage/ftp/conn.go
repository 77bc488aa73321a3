package ftp

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/jlaffaye/ftp"
)

// conn is one logged-in control connection, used by one operation at a
// time. The operation's context bounds it while the operation holds it:
// when the context ends, every connection it made (control and data) is
// closed, which unblocks whatever waits on them. Between operations it waits
// in the Storage's pool (see get and release).
type conn struct {
	*ftp.ServerConn
	s      *Storage
	mu     sync.Mutex
	ctx    context.Context // the operation's, for the data connections it dials
	nets   []net.Conn      // the control connection, then the operation's data connections
	closed bool
	broken bool        // the control connection failed, or a reply is left unread
	stop   func() bool // stops the context's watch
}

// defaultIdleTime is how long a connection waits in the pool for another
// operation before it logs out: long enough for the steps of one backup,
// short enough to stay below servers' idle timeouts (vsftpd's is 300 s).
const defaultIdleTime = 30 * time.Second

// maxIdle bounds the connections a Storage keeps open while idle.
const maxIdle = 4

// get returns a logged-in connection for an operation bound by ctx: an idle
// one from the pool that still answers (NOOP), else a new one. Logging in
// costs several round trips (and a TLS handshake for ftps, a PAM session on
// many servers), so a backup's dozen operations share one connection.
func (s *Storage) get(ctx context.Context) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for {
		c, ok := s.pool.Get()
		if !ok {
			return s.dial(ctx)
		}
		if err := c.bind(ctx); err != nil {
			c.close()
			return nil, s.dialErr(ctx, err, false)
		}
		if c.NoOp() == nil {
			return c, nil
		}
		c.close() // the server dropped it while it was idle
	}
}

// bind makes ctx the context of the connection's next operation.
func (c *conn) bind(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	c.stop = context.AfterFunc(ctx, c.abort)
	return nil
}

// release ends an operation: a connection in step with the server goes back
// to the pool, one that failed (or whose operation's context ended) is
// closed.
func (c *conn) release() {
	if !c.stop() {
		c.close() // the context ended: abort closed it
		return
	}
	c.mu.Lock()
	for _, nc := range c.nets[1:] { // data connections: closed by now, but make sure
		nc.Close()
	}
	c.nets = c.nets[:1]
	c.ctx = nil
	ok := !c.closed && !c.broken
	c.mu.Unlock()
	if !ok {
		c.close()
		return
	}
	c.s.pool.Put(c, c.close)
}

// dial opens a control connection and logs in, for an operation bound by
// ctx.
func (s *Storage) dial(ctx context.Context) (*conn, error) {
	c := &conn{s: s}
	if err := c.bind(ctx); err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: s.xfer.Stall}
	first := true
	// The client dials the control connection, then every data connection,
	// through this function: each is watched for stalls and closed with the
	// operation's context. Data connections of ftps get TLS here (the client
	// upgrades the control connection itself after AUTH TLS).
	dialFn := func(network, addr string) (net.Conn, error) {
		c.mu.Lock()
		octx := c.ctx
		c.mu.Unlock()
		if octx == nil {
			return nil, net.ErrClosed
		}
		nc, err := dialer.DialContext(octx, network, addr)
		if err != nil {
			return nil, err
		}
		data := !first
		first = false
		if s.wrap != nil {
			nc = s.wrap(nc, data)
		}
		sc := &stallConn{Conn: nc, stall: s.xfer.Stall}
		if !data {
			sc.failed = c.markBroken
		}
		nc = sc
		if data && s.tls != nil {
			nc = &tlsData{Conn: tls.Client(nc, s.tls)}
		}
		if !c.track(nc) {
			nc.Close()
			return nil, context.Cause(octx)
		}
		return nc, nil
	}
	opts := []ftp.DialOption{ftp.DialWithDialFunc(dialFn), ftp.DialWithShutTimeout(s.xfer.Stall)}
	if s.tls != nil {
		opts = append(opts, ftp.DialWithExplicitTLS(s.tls))
	}
	sc, err := ftp.Dial(s.addr, opts...)
	if err != nil {
		c.abort()
		c.stop()
		return nil, s.dialErr(ctx, err, false)
	}
	c.ServerConn = sc
	if err := sc.Login(s.user, s.password); err != nil {
		c.close()
		return nil, s.dialErr(ctx, err, true)
	}
	return c, nil
}

// dialErr is the error of a failed connection (before login, where the only
// command is AUTH TLS) or login.
func (s *Storage) dialErr(ctx context.Context, err error, login bool) error {
	switch {
	case ctx.Err() != nil:
		return s.err("connect", "", ctx.Err())
	case code(err) == 0:
		return s.err("connect", "", err)
	case !login && s.tls != nil:
		return fmt.Errorf("storage %s: connect: the server does not offer TLS (AUTH TLS: %s): use ftp:// or enable explicit TLS on the server", s, reply(err))
	case login && (code(err) == ftp.StatusNotLoggedIn || code(err) == ftp.StatusInvalidCredentials):
		return fmt.Errorf("storage %s: login as %s refused (%s): check the user in the URL and %s", s, s.user, reply(err), s.pwFrom)
	}
	return s.err("connect", "", err)
}

// track adds a connection to close with the context, or reports that the
// context has ended.
func (c *conn) track(nc net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.nets = append(c.nets, nc)
	return true
}

// abort closes every connection at once.
func (c *conn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, nc := range c.nets {
		nc.Close()
	}
	c.nets = nil
}

// markBroken says the connection may not be used for another operation.
func (c *conn) markBroken() {
	c.mu.Lock()
	c.broken = true
	c.mu.Unlock()
}

// close says goodbye and releases everything.
func (c *conn) close() {
	c.stop()
	c.mu.Lock()
	closed, broken := c.closed, c.broken
	c.mu.Unlock()
	if !closed && !broken && c.ServerConn != nil {
		_ = c.Quit()
	}
	c.abort()
}

// stallConn fails a read or write that moves nothing for stall, and calls
// failed (if set) when one fails.
type stallConn struct {
	net.Conn
	stall  time.Duration
	failed func()
}

func (c *stallConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.stall))
	n, err := c.Conn.Read(p)
	if err != nil && c.failed != nil {
		c.failed()
	}
	return n, err
}

func (c *stallConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.stall))
	n, err := c.Conn.Write(p)
	if err != nil && c.failed != nil {
		c.failed()
	}
	return n, err
}

// tlsData is a TLS data connection that ends cleanly. A TLS 1.3 server sends
// session tickets on it, which an upload never reads; closing a socket with
// unread data resets the connection, and the server may then lose the end
// of the upload ("426 Failure reading network stream"). So Close says
// close_notify, reads what the server still sends (a bounded amount: an
// aborted download is not read to its end), and then closes.
type tlsData struct {
	*tls.Conn
	once sync.Once
}

func (c *tlsData) Close() error {
	c.once.Do(func() {
		if c.Conn.CloseWrite() == nil {
			_ = c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, 256<<10))
		}
	})
	return c.Conn.Close()
}
