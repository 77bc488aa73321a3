package sftp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
)

// cutProxy forwards TCP connections to target. Once armed, it drops the
// connection that carries the next cutAfter bytes from the server.
type cutProxy struct {
	addr     string
	armed    atomic.Int64 // bytes still to pass before the cut; 0: not armed
	cuts     atomic.Int32
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
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
			p.accepted.Add(1)
			p.mu.Lock()
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			wg.Go(func() { p.serve(c, target) })
		}
	})
	return p
}

func (p *cutProxy) serve(c net.Conn, target string) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { io.Copy(up, c); up.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if left := p.armed.Load(); left > 0 {
				if p.armed.Add(-int64(n)) <= 0 {
					p.armed.Store(0)
					p.cuts.Add(1)
					return // drops both sides
				}
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestOpenResumesAfterACut: a download whose connection drops part way
// goes on from where it stopped, on a new connection, and reads the whole
// object.
func TestOpenResumesAfterACut(t *testing.T) {
	srv := testenv.StartSFTP(t)
	srv.SetEnv(t)
	proxy := startCutProxy(t, srv.Addr)
	dir := mkdir(t, srv, "resume")
	// The known_hosts line names the server's address; the proxy's must be
	// known too.
	t.Setenv("REMORA_SFTP_KNOWN_HOSTS", strings.ReplaceAll(readFile(t, srv.KnownHosts), srv.Addr[len("127.0.0.1:"):], proxy.addr[len("127.0.0.1:"):]))
	t.Setenv("REMORA_SFTP_KNOWN_HOSTS_FILE", "")
	var logs bytes.Buffer
	ctx := context.Background()
	st, err := storage.Open(ctx, "sftp://"+srv.User+"@"+proxy.addr+dir, storage.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 9<<20+777)
	rand.Read(data)
	if _, err := st.Put(ctx, "big", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r, err := st.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	proxy.armed.Store(3 << 20) // part way through the download
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatalf("read %d bytes, then: %v", n, err)
	}
	if want := sha256.Sum256(data); n != int64(len(data)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("read %d bytes, want the %d written, unchanged", n, len(data))
	}
	if proxy.cuts.Load() != 1 || proxy.accepted.Load() != 2 {
		t.Fatalf("%d cuts, %d connections: the download was not cut and resumed", proxy.cuts.Load(), proxy.accepted.Load())
	}
	if !strings.Contains(logs.String(), "storage download broke, resuming") || strings.Contains(logs.String(), testenv.Canary) {
		t.Fatalf("log: %s", logs.String())
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
