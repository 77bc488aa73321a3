package smb

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/cloudsoda/go-smb2"
)

// idleTime is how long a connection waits in the pool for another
// operation before it logs off: long enough for the steps of one backup.
const idleTime = 30 * time.Second

// maxIdle bounds the connections a Storage keeps open while idle.
const maxIdle = 4

// conn is one connection to the share, used by one operation at a time.
// Between operations it waits in the Storage's pool: a connection costs a
// TCP handshake, a negotiation, an NTLM login and a tree connect, and smbd
// a new process, about 50 ms each on a busy machine, for each of a backup's
// dozen operations.
type conn struct {
	s       *Storage
	tcp     *watchedConn
	sess    *smb2.Session
	mounted *smb2.Share     // bound to no context
	share   *smb2.Share     // the operation's: its requests end with ctx
	ctx     context.Context // the operation's
	killed  atomic.Bool
}

// watchedConn remembers that a read or write on it failed: the connection
// is broken and may serve no other operation.
type watchedConn struct {
	net.Conn
	failed atomic.Bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

func (c *watchedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

// get returns a connection for an operation whose requests end with ctx:
// an idle one from the pool that still answers (ECHO), else a new one.
func (s *Storage) get(ctx context.Context) (*conn, error) {
	for c, ok := s.pool.Get(); ok; c, ok = s.pool.Get() {
		if c.sess.WithContext(ctx).Echo() == nil {
			c.use(ctx)
			return c, nil
		}
		c.kill() // the server dropped it while it was idle
	}
	return s.connect(ctx)
}

// connect dials the server, logs in and mounts the share, for an operation
// whose requests end with ctx.
func (s *Storage) connect(ctx context.Context) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(dctx, "tcp", s.addr)
	if err != nil {
		return nil, s.err("connect", "", err)
	}
	tcp := &watchedConn{Conn: nc}
	d := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: s.user, Password: s.password, Domain: s.domain}}
	sess, err := d.DialConn(dctx, tcp, s.addr)
	if err != nil {
		tcp.Close()
		return nil, s.err("connect", "", err)
	}
	share, err := sess.WithContext(dctx).Mount(s.share)
	if err != nil {
		_ = sess.Logoff()
		tcp.Close()
		return nil, s.err("connect", "", err)
	}
	c := &conn{s: s, tcp: tcp, sess: sess, mounted: share}
	c.use(ctx)
	return c, nil
}

// use binds the connection to an operation's context.
func (c *conn) use(ctx context.Context) {
	c.ctx = ctx
	c.share = c.mounted.WithContext(ctx)
}

// release ends an operation: the connection goes back to the pool, unless
// it broke, or its operation's context ended (a request it abandoned may
// have left the SMB client mid-send: see kill).
func (c *conn) release() {
	if c.killed.Load() || c.tcp.failed.Load() || c.ctx.Err() != nil {
		c.kill()
		return
	}
	c.ctx, c.share = nil, nil
	c.s.pool.Put(c, c.close)
}

// kill closes the connection under its requests, which fail at once. A
// request abandoned by its context instead may leave the SMB client
// mid-send, and the connection unusable (the client reuses the send buffer
// of the abandoned request), so a Put ends with kill when its context does,
// and a connection whose operation's context ended is killed, not reused.
func (c *conn) kill() {
	c.killed.Store(true)
	c.tcp.Close()
}

// close logs off, which also closes the connection, waiting a few seconds
// at most for the server.
func (c *conn) close() {
	if c.killed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.sess.WithContext(ctx).Logoff()
	c.tcp.Close()
}
