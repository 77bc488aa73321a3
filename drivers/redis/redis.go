// Package redis backs up Redis (and Valkey) servers by taking the RDB
// snapshot over the replication protocol, as a replica's full sync does
// (and redis-cli --rdb), streaming it with no file on disk. It works whether
// or not the server itself persists to disk.
//
// A restore is online: a temporary redis-server on a loopback port loads the
// RDB, the target replicates from it, and is then promoted back; the target
// keeps running and its clients stay connected. The offline way, placing the
// RDB as dump.rdb in the data directory before the server starts, needs
// nothing from Remora (README).
package redis

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"remora.dev/remora/drivers"
)

// Name is the driver's name in --driver and remora.dev/driver.
const Name = "redis"

// FormatRDB is the format of the one object of a Redis backup.
const FormatRDB = "rdb"

// objectDatabase names the whole keyspace in the manifest.
const objectDatabase = "keyspace"

func init() {
	drivers.Register(Name, func(cfg drivers.Config) (drivers.Driver, error) { return New(cfg) })
}

// Driver talks to one Redis server.
type Driver struct {
	opts  *goredis.Options
	where string
	stall time.Duration // a dump fails when the server sends nothing for this long
}

// New checks the DSN: redis://[user]:password@host:port, rediss:// for TLS,
// or unix://[user]:password@/path/to/redis.sock.
func New(cfg drivers.Config) (*Driver, error) {
	if len(cfg.Databases) > 0 {
		return nil, fmt.Errorf("redis: a backup holds the whole keyspace; --databases does not apply")
	}
	if err := drivers.CheckArgs("redis", cfg.DumpArgs, nil); err != nil {
		return nil, err
	}
	opts, err := goredis.ParseURL(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("redis: the DSN must be a URL such as redis://:password@127.0.0.1:6379 or unix:///run/redis/redis.sock")
	}
	opts.DialTimeout = 15 * time.Second
	opts.MaxRetries = 1
	opts.Protocol = 2
	opts.DisableIdentity = true
	return &Driver{opts: opts, where: opts.Addr, stall: defaultStall}, nil
}

// defaultStall is how long a dump waits for the next byte from the server.
// While it prepares a snapshot the server sends a newline every second, so
// only a stuck server or a dead link is this quiet.
const defaultStall = 2 * time.Minute

func (d *Driver) client() *goredis.Client { return goredis.NewClient(d.opts) }

// explain turns connection errors into advice.
func (d *Driver) explain(err error) error {
	reply := func(prefix string) bool { return goredis.HasErrorPrefix(err, prefix) }
	switch {
	case reply("WRONGPASS"), reply("NOAUTH"), reply("invalid password"):
		return fmt.Errorf("redis %s: login refused (%s): check the user and password (DSN)", d.where, firstLine(err.Error()))
	case reply("NOPERM"):
		return fmt.Errorf("redis %s: the user lacks a permission (%s): it needs SYNC, REPLCONF, INFO and, to restore, REPLICAOF and CONFIG", d.where, firstLine(err.Error()))
	}
	var nerr net.Error
	if errors.As(err, &nerr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("redis %s: cannot connect: %v: check the DSN and that the server is running", d.where, err)
	}
	return fmt.Errorf("redis %s: %w", d.where, err)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// info reads one field of INFO.
func info(ctx context.Context, c *goredis.Client, section, field string) (string, error) {
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, nil
		}
	}
	return "", nil
}

func (d *Driver) Plan(ctx context.Context) (*drivers.Plan, error) {
	c := d.client()
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		return nil, d.explain(err)
	}
	ver, err := info(ctx, c, "server", "redis_version")
	if err != nil {
		return nil, d.explain(err)
	}
	if v, _ := info(ctx, c, "server", "valkey_version"); v != "" {
		ver = "valkey " + v
	}
	return &drivers.Plan{
		ServerVersion: ver,
		Tools:         map[string]string{"protocol": "SYNC"},
		Objects:       []drivers.Object{{Name: "dump.rdb", Kind: drivers.KindDatabase, Database: objectDatabase, Format: FormatRDB}},
	}, nil
}

// dial opens a raw connection like the client's, authenticated.
func (d *Driver) dial(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	dialer := &net.Dialer{Timeout: d.opts.DialTimeout}
	conn, err := dialer.DialContext(ctx, d.opts.Network, d.opts.Addr)
	if err != nil {
		return nil, nil, d.explain(err)
	}
	if d.opts.TLSConfig != nil {
		tc := tls.Client(conn, d.opts.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, d.explain(err)
		}
		conn = tc
	}
	br := bufio.NewReaderSize(stallReader{conn: conn, timeout: d.stall}, 64<<10)
	if d.opts.Password != "" {
		args := []string{"AUTH", d.opts.Password}
		if d.opts.Username != "" {
			args = []string{"AUTH", d.opts.Username, d.opts.Password}
		}
		if _, err := command(conn, br, args...); err != nil {
			conn.Close()
			return nil, nil, d.explain(err)
		}
	}
	return conn, br, nil
}

// stallReader reads from a connection and fails a read that brings nothing
// for timeout: a server that stops sending, before a snapshot or in its
// middle, must fail the dump rather than hang it for ever.
type stallReader struct {
	conn    net.Conn
	timeout time.Duration
}

func (s stallReader) Read(p []byte) (int, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(s.timeout))
	n, err := s.conn.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("stalled: the server sent nothing for %s: check the network and the server's load", s.timeout)
	}
	return n, err
}

// command sends one command and reads a simple reply line.
func command(conn net.Conn, br *bufio.Reader, args ...string) (string, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		return "", err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if strings.HasPrefix(line, "-") {
		return "", replyError(line[1:])
	}
	return line, nil
}

// replyError is an error reply of the server to a command sent on a raw
// connection; like go-redis's own, it is a goredis.Error.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

var _ goredis.Error = replyError("")

// eofMarkLen is the length of the end marker of a diskless transfer.
const eofMarkLen = 40

// Dump asks for a full sync and copies the RDB payload to w. The master sends
// either "$<length>" and that many bytes (disk-based), or "$EOF:<mark>", the
// payload, and the mark again (diskless).
func (d *Driver) Dump(ctx context.Context, obj drivers.Object, w io.Writer) error {
	conn, br, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	// Say we take an EOF-marked (diskless) transfer and only want the RDB,
	// not a replication stream afterwards (Redis 7+; older servers refuse).
	if _, err := command(conn, br, "REPLCONF", "capa", "eof"); err != nil {
		return ctxErr(ctx, d.explain(fmt.Errorf("REPLCONF: %w", err)))
	}
	if _, err := command(conn, br, "REPLCONF", "rdb-only", "1"); err != nil && !errors.As(err, new(replyError)) {
		return ctxErr(ctx, d.explain(fmt.Errorf("REPLCONF: %w", err)))
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nSYNC\r\n")); err != nil {
		return ctxErr(ctx, d.explain(err))
	}
	// The master sends newlines as keepalives while it prepares.
	var header string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return ctxErr(ctx, fmt.Errorf("redis %s: SYNC: %w", d.where, err))
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "-") {
			return d.explain(fmt.Errorf("SYNC: %s", line[1:]))
		}
		header = line
		break
	}
	if mark, ok := strings.CutPrefix(header, "$EOF:"); ok {
		if len(mark) != eofMarkLen {
			return fmt.Errorf("redis %s: SYNC: bad end marker in %q", d.where, header)
		}
		if err := copyUntilMark(w, br, []byte(mark)); err != nil {
			return ctxErr(ctx, fmt.Errorf("redis %s: SYNC: %w", d.where, err))
		}
		return nil
	}
	size, err := strconv.ParseInt(strings.TrimPrefix(header, "$"), 10, 64)
	if err != nil || !strings.HasPrefix(header, "$") {
		return fmt.Errorf("redis %s: SYNC: unexpected reply %q", d.where, header)
	}
	n, err := io.CopyN(w, br, size)
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("redis %s: SYNC: the snapshot ended after %d of %d bytes: %w", d.where, n, size, err))
	}
	return nil
}

func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// copyUntilMark copies r to w up to the end marker, which it does not copy.
// A stream that ends without the marker is an error.
func copyUntilMark(w io.Writer, r io.Reader, mark []byte) error {
	buf := make([]byte, 64<<10+len(mark))
	held := 0 // bytes at the start of buf not yet written: a possible marker
	for {
		n, err := r.Read(buf[held:])
		held += n
		if held >= len(mark) && bytes.Equal(buf[held-len(mark):held], mark) {
			_, werr := w.Write(buf[:held-len(mark)])
			return werr
		}
		if held > len(mark) {
			out := held - len(mark)
			if _, werr := w.Write(buf[:out]); werr != nil {
				return werr
			}
			copy(buf, buf[out:held])
			held = len(mark)
		}
		if err != nil {
			if err == io.EOF {
				return fmt.Errorf("the snapshot ended before its end marker")
			}
			return err
		}
	}
}

func (d *Driver) CheckRestore(ctx context.Context, objs []drivers.Object, opts drivers.RestoreOptions) error {
	if opts.Into != "" {
		return fmt.Errorf("redis: a restore replaces the whole keyspace of the server; --into does not apply")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("redis: an online restore needs redis-server (it loads the snapshot on a loopback port for the target to replicate from): install it")
	}
	c := d.client()
	defer c.Close()
	n, err := c.DBSize(ctx).Result()
	if err != nil {
		return d.explain(err)
	}
	if n > 0 && !opts.Yes {
		return fmt.Errorf("redis: the server holds %d keys and the restore replaces them all: add --yes", n)
	}
	role, err := info(ctx, c, "replication", "role")
	if err != nil {
		return d.explain(err)
	}
	if role != "master" {
		return fmt.Errorf("redis: the server is a replica (role %s): restore into the primary", role)
	}
	return nil
}

// Restore writes the RDB to a temporary directory, starts redis-server on it
// at a loopback port, makes the target replicate from it until the full sync
// is done, and promotes the target back to a primary. The target's former
// keys are replaced; its configuration is kept.
func (d *Driver) Restore(ctx context.Context, obj drivers.Object, r io.Reader, opts drivers.RestoreOptions) error {
	dir, err := os.MkdirTemp("", "remora-redis-restore")
	if err != nil {
		return fmt.Errorf("redis: restore needs a temporary directory for the snapshot: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := writeSnapshot(filepath.Join(dir, "dump.rdb"), r); err != nil {
		return err // the snapshot failed its checks: nothing was touched
	}
	src, err := startSource(ctx, dir)
	if err != nil {
		return err
	}
	defer src.stop()
	keys, _ := src.client.DBSize(ctx).Result()

	c := d.client()
	defer c.Close()
	restoreAuth, err := d.useSourceAuth(ctx, c, src.password)
	if err != nil {
		return err
	}
	defer restoreAuth()
	if err := c.Do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(src.port)).Err(); err != nil {
		return d.explain(err)
	}
	err = waitFor(ctx, 24*time.Hour, func() error {
		link, err := info(ctx, c, "replication", "master_link_status")
		if err != nil {
			return err
		}
		syncing, _ := info(ctx, c, "replication", "master_sync_in_progress")
		if link != "up" || syncing != "0" {
			return errors.New("syncing")
		}
		return nil
	})
	if perr := c.Do(context.WithoutCancel(ctx), "REPLICAOF", "NO", "ONE").Err(); perr != nil && err == nil {
		err = fmt.Errorf("promote back to primary: %w", perr)
	}
	if err != nil {
		return fmt.Errorf("redis: restore failed (the server was told to stop replicating; check its keys): %w", err)
	}
	got, _ := c.DBSize(ctx).Result()
	if got != keys {
		opts.Warnf("redis: the snapshot held %d keys in db 0, the server now has %d (clients may have written meanwhile)", keys, got)
	}
	return nil
}

func writeSnapshot(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// source is the temporary redis-server a restore replicates from.
type source struct {
	port     int
	password string
	srv      *exec.Cmd
	client   *goredis.Client
}

// startSource starts redis-server on the snapshot in dir and waits until it
// has loaded it. The server takes a random password: anyone on the host could
// otherwise read the snapshot from it, or write into what the target loads.
func startSource(ctx context.Context, dir string) (*source, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &source{port: port, password: randomPassword()}
	// The configuration comes on stdin ("-"): the password is in no
	// argument, where ps would show it, and in no file.
	s.srv = exec.Command("redis-server", "-")
	s.srv.Stdin = strings.NewReader(sourceConfig(port, dir, s.password))
	s.srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.srv.Env = drivers.ToolEnv(nil)
	if err := s.srv.Start(); err != nil {
		return nil, fmt.Errorf("redis: start the temporary redis-server: %w", err)
	}
	s.client = goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), Password: s.password,
		Protocol: 2, DisableIdentity: true})
	if err := waitFor(ctx, 30*time.Second, func() error {
		loading, err := info(ctx, s.client, "persistence", "loading")
		if err == nil && loading != "0" {
			return errors.New("still loading")
		}
		return err
	}); err != nil {
		s.stop()
		log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
		return nil, fmt.Errorf("redis: the temporary redis-server did not load the snapshot: %v: %s", err, lastLines(string(log), 3))
	}
	return s, nil
}

// sourceConfig is the temporary server's redis.conf: on a loopback port, the
// snapshot in dir, no persistence, a diskless full sync at once.
func sourceConfig(port int, dir, password string) string {
	return strings.Join([]string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"dir " + confQuote(dir),
		"dbfilename dump.rdb",
		`save ""`,
		"appendonly no",
		"repl-diskless-sync yes",
		"repl-diskless-sync-delay 0",
		"logfile " + confQuote(filepath.Join(dir, "redis.log")),
		"requirepass " + password,
	}, "\n") + "\n"
}

// confQuote quotes s as a string of redis.conf.
func confQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// randomPassword is 32 random bytes in hex.
func randomPassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func (s *source) stop() {
	s.client.Close()
	_ = s.srv.Process.Signal(syscall.SIGTERM)
	_ = s.srv.Wait()
}

// useSourceAuth makes the target log in to the temporary server with its
// password, as the default user, and returns what puts the target's own
// masteruser and masterauth back.
func (d *Driver) useSourceAuth(ctx context.Context, c *goredis.Client, password string) (restore func(), err error) {
	saved := map[string]string{}
	restore = func() {
		rctx := context.WithoutCancel(ctx)
		for k, v := range saved {
			_ = c.ConfigSet(rctx, k, v).Err()
		}
	}
	for _, kv := range [][2]string{{"masteruser", ""}, {"masterauth", password}} {
		k, v := kv[0], kv[1]
		cur, err := c.ConfigGet(ctx, k).Result()
		if err != nil {
			restore()
			return nil, d.explain(err)
		}
		old, known := cur[k]
		if !known && v == "" {
			continue // a server without ACL users (before Redis 6) has no masteruser
		}
		if err := c.ConfigSet(ctx, k, v).Err(); err != nil {
			restore()
			return nil, d.explain(err)
		}
		saved[k] = old
	}
	return restore, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitFor(ctx context.Context, limit time.Duration, ready func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Replica reports ROLE: a "slave" (replica) or "sentinel" is not a primary.
func (d *Driver) Replica(ctx context.Context) (bool, error) {
	c := d.client()
	defer c.Close()
	role, err := info(ctx, c, "replication", "role")
	if err != nil {
		return false, d.explain(err)
	}
	return role != "master", nil
}
