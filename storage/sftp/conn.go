package sftp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"slices"
	"time"

	sftpc "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"remora.dev/remora/internal/errs"
)

// Transfer limits. pkg/sftp sends a file as packets of maxPacket bytes with
// up to maxInFlight requests outstanding; the client holds one packet being
// filled and the one being sent, the rest of the window is on the wire.
// Reads come through SSH's receive window (2 MiB per channel) into a
// readAhead buffer.
const (
	maxPacket   = 32 << 10
	maxInFlight = 64
	readAhead   = 1 << 20
	dialTimeout = 30 * time.Second
	// keepalive: a connection that answers no keepalive for keepaliveWait
	// is closed, so a stalled transfer fails instead of hanging.
	keepaliveEvery = 15 * time.Second
	keepaliveWait  = 60 * time.Second
)

// conn is one SSH connection and its SFTP session.
type conn struct {
	ssh   *ssh.Client
	sftp  *sftpc.Client
	posix bool // posix-rename@openssh.com: rename replaces the target atomically
	fsync bool // fsync@openssh.com
	done  chan struct{}
}

func (c *conn) close() {
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	// The SSH connection first: closing the SFTP session waits for its
	// reader, which a connection that stopped answering never wakes.
	c.ssh.Close()
	c.sftp.Close()
}

// client returns the storage's connection, dialing it if there is none.
func (s *Storage) client(ctx context.Context) (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		return s.c, nil
	}
	c, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.c = c
	return c, nil
}

// drop forgets a connection that broke, so the next call dials again.
func (s *Storage) drop(c *conn) {
	s.mu.Lock()
	if s.c == c {
		s.c = nil
	}
	s.mu.Unlock()
	c.close()
}

// Close ends the connection, if any.
func (s *Storage) Close() error {
	s.mu.Lock()
	c := s.c
	s.c = nil
	s.mu.Unlock()
	if c != nil {
		c.close()
	}
	return nil
}

// dial connects, checks the host key and logs in.
func (s *Storage) dial(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	tcp, err := d.DialContext(ctx, "tcp", s.cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("storage %s: cannot reach %s: %v: check the host, the port and the network", s, s.cfg.addr, errs.Root(err))
	}
	algos, err := s.hostKeyAlgorithms()
	if err != nil {
		tcp.Close()
		return nil, err
	}
	var hostErr error
	cfg := &ssh.ClientConfig{
		User: s.cfg.user,
		Auth: s.cfg.auth,
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			hostErr = s.checkHostKey(host, remote, key)
			return hostErr
		},
		HostKeyAlgorithms: algos,
		Timeout:           dialTimeout,
	}
	_ = tcp.SetDeadline(time.Now().Add(dialTimeout))
	stop := context.AfterFunc(ctx, func() { tcp.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(tcp, s.cfg.addr, cfg)
	stop()
	if err != nil {
		tcp.Close()
		return nil, s.handshakeErr(ctx, hostErr, err)
	}
	_ = tcp.SetDeadline(time.Time{})
	sshc := ssh.NewClient(sc, chans, reqs)
	fc, err := sftpc.NewClient(sshc, sftpc.MaxPacket(maxPacket), sftpc.MaxConcurrentRequestsPerFile(maxInFlight),
		sftpc.UseConcurrentWrites(true), sftpc.UseFstat(true))
	if err != nil {
		sshc.Close()
		return nil, fmt.Errorf("storage %s: the server does not offer SFTP to %s: %v", s, s.cfg.user, err)
	}
	c := &conn{ssh: sshc, sftp: fc, done: make(chan struct{})}
	_, c.posix = fc.HasExtension("posix-rename@openssh.com")
	_, c.fsync = fc.HasExtension("fsync@openssh.com")
	go s.keepalive(c)
	return c, nil
}

// keepalive asks the server for a reply every keepaliveEvery and closes the
// connection when one does not come within keepaliveWait: a transfer on a
// dead link then fails (and a download resumes) instead of waiting forever.
func (s *Storage) keepalive(c *conn) {
	t := time.NewTicker(keepaliveEvery)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-c.done:
			return
		case err := <-reply:
			if err == nil {
				continue
			}
		case <-time.After(keepaliveWait):
			s.log.Warn("storage connection stopped answering, closing it", "storage", s.String())
		}
		s.drop(c)
		return
	}
}

// hostKeyAlgorithms are the key types known_hosts holds for the server, so
// that the server presents one of those: without this it may present a type
// known_hosts lacks, which would look like a changed key.
func (s *Storage) hostKeyAlgorithms() ([]string, error) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	probe, _ := ssh.NewPublicKey(pub) // a fresh key, known to no known_hosts
	addr, _ := net.ResolveTCPAddr("tcp", s.cfg.addr)
	if addr == nil {
		addr = &net.TCPAddr{}
	}
	var ke *knownhosts.KeyError
	if err := s.cfg.hostKeys(s.cfg.addr, addr, probe); !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil, s.unknownHost()
	}
	var algos []string
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, t)
		}
	}
	slices.Sort(algos)
	return slices.Compact(algos), nil
}

func (s *Storage) unknownHost() error {
	return fmt.Errorf("storage %s: host %s is not in the known hosts (%s): add its key, checked out of band: ssh-keyscan -p PORT HOST", s, s.cfg.addr, s.cfg.hostKeysFrom)
}

// checkHostKey is the known_hosts check, with errors that say what happened.
func (s *Storage) checkHostKey(host string, remote net.Addr, key ssh.PublicKey) error {
	err := s.cfg.hostKeys(host, remote, key)
	var ke *knownhosts.KeyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ke) && len(ke.Want) == 0:
		return s.unknownHost()
	case errors.As(err, &ke):
		return fmt.Errorf("storage %s: the host key of %s has CHANGED (it presented %s %s; %s has another): if the server's key was replaced on purpose, update the known hosts; if not, someone may be intercepting the connection", s, s.cfg.addr, key.Type(), ssh.FingerprintSHA256(key), s.cfg.hostKeysFrom)
	}
	return fmt.Errorf("storage %s: host key of %s: %v", s, s.cfg.addr, err)
}

// handshakeErr turns a failed SSH handshake into one line.
func (s *Storage) handshakeErr(ctx context.Context, hostErr, err error) error {
	switch {
	case hostErr != nil:
		return hostErr
	case ctx.Err() != nil:
		return fmt.Errorf("storage %s: connect: %w", s, ctx.Err())
	case errors.Is(err, io.EOF) || isNetErr(err):
		return fmt.Errorf("storage %s: %s closed the SSH connection during the handshake: %v: check that it is an SSH server that lets %s in", s, s.cfg.addr, errs.Root(err), s.cfg.user)
	}
	return fmt.Errorf("storage %s: login as %s refused: check %s, and that the server lets %s in by them", s, s.cfg.user, s.cfg.authFrom, s.cfg.user)
}

// broken tells a failed connection from an answer of the server, which does
// not change when asked again.
func broken(err error) bool {
	if err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrExist) {
		return false
	}
	var st *sftpc.StatusError
	return !errors.As(err, &st)
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
