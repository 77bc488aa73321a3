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

// conn is one logged-in control connection, used by one operation. The
// context it was opened with bounds it: when the context ends, every
// connection it made (control and data) is closed, which unblocks whatever
// waits on them.
type conn struct {
	*ftp.ServerConn
	mu     sync.Mutex
	nets   []net.Conn
	closed bool
	stop   func() bool // stops the context's watch
}

// dial opens a control connection and logs in.
func (s *Storage) dial(ctx context.Context) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &conn{}
	dialer := &net.Dialer{Timeout: s.xfer.Stall}
	first := true
	// The client dials the control connection, then every data connection,
	// through this function: each is watched for stalls and closed with the
	// context. Data connections of ftps get TLS here (the client upgrades the
	// control connection itself after AUTH TLS).
	dialFn := func(network, addr string) (net.Conn, error) {
		nc, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		data := !first
		first = false
		if s.wrap != nil {
			nc = s.wrap(nc, data)
		}
		nc = &stallConn{Conn: nc, stall: s.xfer.Stall}
		if data && s.tls != nil {
			nc = &tlsData{Conn: tls.Client(nc, s.tls)}
		}
		if !c.track(nc) {
			nc.Close()
			return nil, context.Cause(ctx)
		}
		return nc, nil
	}
	opts := []ftp.DialOption{ftp.DialWithDialFunc(dialFn), ftp.DialWithShutTimeout(s.xfer.Stall)}
	if s.tls != nil {
		opts = append(opts, ftp.DialWithExplicitTLS(s.tls))
	}
	c.stop = context.AfterFunc(ctx, c.abort)
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

// close says goodbye and releases everything.
func (c *conn) close() {
	c.stop()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if !closed && c.ServerConn != nil {
		_ = c.Quit()
	}
	c.abort()
}

// stallConn fails a read or write that moves nothing for stall.
type stallConn struct {
	net.Conn
	stall time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.stall))
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.stall))
	return c.Conn.Write(p)
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
