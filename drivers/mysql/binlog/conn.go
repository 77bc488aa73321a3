package binlog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Config says where the server is and who logs in.
type Config struct {
	Network  string // "unix" or "tcp"
	Address  string // socket path or host:port
	User     string
	Password string
	Timeout  time.Duration // connect and handshake; 0: 15s
}

// maxPayload is the largest payload of one packet; a longer one is split
// into packets of this size followed by a shorter one (maybe empty).
const maxPayload = 1<<24 - 1

// Conn is one logged-in connection. It is not safe for concurrent use.
type Conn struct {
	nc      net.Conn
	r       *bufio.Reader
	seq     byte
	caps    uint32
	version string // without MariaDB's "5.5.5-" prefix
	mariadb bool
	cfg     Config

	closeOnce sync.Once
	closeErr  error
	dumping   bool // after COM_BINLOG_DUMP the server only sends events
}

// Dial connects and logs in. The password never appears in an error.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.Network != "unix" && cfg.Network != "tcp" {
		return nil, fmt.Errorf("binlog: network %q: want unix or tcp", cfg.Network)
	}
	if cfg.Address == "" {
		return nil, errors.New("binlog: no server address")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, cfg.Network, cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("binlog: connect: %w", err)
	}
	c := &Conn{nc: nc, r: bufio.NewReaderSize(nc, 64<<10), cfg: cfg}
	stop := c.closeOn(ctx)
	err = c.handshake()
	if !stop() || err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("binlog: log in to %s: %w", cfg.Address, ctx.Err())
		}
		return nil, err
	}
	return c, nil
}

// closeOn closes the connection when ctx ends, which makes a blocked read or
// write return. The returned stop reports false when that happened.
func (c *Conn) closeOn(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.nc.Close() })
}

// Close closes the connection.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		if !c.dumping {
			// A polite goodbye; the server is not waiting for one mid-dump.
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			c.seq = 0
			_ = c.writePacket([]byte{comQuit})
		}
		if err := c.nc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			c.closeErr = err
		}
	})
	return c.closeErr
}

// readPacket reads one logical packet, joining the 16 MiB pieces of a long
// one. The returned slice is the caller's.
func (c *Conn) readPacket() ([]byte, error) {
	var out []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return nil, c.readErr(err)
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		if hdr[3] != c.seq {
			return nil, fmt.Errorf("binlog: packet sequence %d, want %d", hdr[3], c.seq)
		}
		c.seq++
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(c.r, out[start:]); err != nil {
			return nil, c.readErr(err)
		}
		if n < maxPayload {
			return out, nil
		}
	}
}

func (c *Conn) readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("binlog: server closed the connection: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("binlog: read: %w", err)
}

// writePacket sends payload as one logical packet.
func (c *Conn) writePacket(payload []byte) error {
	for {
		n := min(len(payload), maxPayload)
		buf := make([]byte, 4, 4+n)
		buf[0], buf[1], buf[2], buf[3] = byte(n), byte(n>>8), byte(n>>16), c.seq
		c.seq++
		if _, err := c.nc.Write(append(buf, payload[:n]...)); err != nil {
			return fmt.Errorf("binlog: write: %w", err)
		}
		payload = payload[n:]
		if n < maxPayload {
			return nil
		}
	}
}

// command starts a new command: the sequence restarts at 0.
func (c *Conn) command(payload []byte) error {
	if c.dumping {
		return errors.New("binlog: the connection is streaming the binary log")
	}
	c.seq = 0
	return c.writePacket(payload)
}

// ServerError is an error packet from the server.
type ServerError struct {
	Code    uint16
	State   string
	Message string
}

func (e *ServerError) Error() string {
	if e.State == "" {
		return fmt.Sprintf("server error %d: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("server error %d (%s): %s", e.Code, e.State, e.Message)
}

// parseError decodes an ERR packet (first byte 0xff).
func parseError(p []byte) *ServerError {
	e := &ServerError{}
	if len(p) >= 3 {
		e.Code = uint16(p[1]) | uint16(p[2])<<8
		p = p[3:]
	} else {
		p = nil
	}
	if len(p) >= 6 && p[0] == '#' {
		e.State, p = string(p[1:6]), p[6:]
	}
	e.Message = strings.TrimSpace(string(p))
	return e
}

// Packet kinds by their first byte.
const (
	pktOK  = 0x00
	pktEOF = 0xfe
	pktErr = 0xff
)

// Commands.
const (
	comQuit          = 0x01
	comQuery         = 0x03
	comBinlogDump    = 0x12
	comRegisterSlave = 0x15
)

// isEOF tells an EOF (or, with CLIENT_DEPRECATE_EOF, OK) terminator from a
// row that happens to start with 0xfe.
func isEOF(p []byte) bool { return len(p) > 0 && p[0] == pktEOF && len(p) < 9 }
