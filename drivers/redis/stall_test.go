package redis

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/testenv"
)

// stallProxy forwards connections to target: all the client sends, and of
// what the server sends only as much as cut allows. cut is given everything
// the server has sent so far and returns how many of those bytes pass; once
// it holds bytes back, nothing more passes and the connections stay open, as
// over a link that went silent, until the test ends.
func stallProxy(t *testing.T, target string, cut func(seen []byte) int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, s)
			mu.Unlock()
			go io.Copy(s, c)
			go forward(c, s, cut)
		}
	}()
	return ln.Addr().String()
}

// forward copies from the server s to the client c as far as cut allows.
func forward(c, s net.Conn, cut func(seen []byte) int) {
	var seen []byte
	passed := 0
	buf := make([]byte, 32<<10)
	for {
		n, err := s.Read(buf)
		seen = append(seen, buf[:n]...)
		if allow := min(cut(seen), len(seen)); allow > passed {
			if _, werr := c.Write(seen[passed:allow]); werr != nil {
				return
			}
			passed = allow
		}
		if err != nil || passed < len(seen) {
			return // held back: silence, the connections left open
		}
	}
}

// afterLines passes the server's bytes up to the end of its nth "\r\n"-ended
// line (keepalive newlines do not count), and extra bytes more.
func afterLines(n, extra int) func([]byte) int {
	return func(seen []byte) int {
		end := 0
		for i := 0; i < n; i++ {
			j := bytes.Index(seen[end:], []byte("\r\n"))
			if j < 0 {
				return len(seen)
			}
			end += j + 2
		}
		return end + extra
	}
}

// TestDumpFailsWhenTheServerStalls: a server that stops sending, before the
// snapshot's header or in the middle of the snapshot, fails the dump after
// the stall timeout with an error that says so, instead of hanging it. The
// replies to AUTH, REPLCONF capa eof and REPLCONF rdb-only are the first
// three lines, the snapshot's header ($EOF:<mark> or $<length>) the fourth.
func TestDumpFailsWhenTheServerStalls(t *testing.T) {
	for _, tc := range []struct {
		name string
		sync string // repl-diskless-sync
		cut  func([]byte) int
	}{
		{"at login", "yes", afterLines(0, 0)},
		{"diskless, before the header", "yes", afterLines(3, 0)},
		{"diskless, in the snapshot", "yes", afterLines(4, 5)},
		{"disk, before the header", "no", afterLines(3, 0)},
		{"disk, in the snapshot", "no", afterLines(4, 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.StartRedis(t, "--repl-diskless-sync", tc.sync)
			c := r.Client()
			defer c.Close()
			if err := c.Set(context.Background(), "k", strings.Repeat("v", 1000), 0).Err(); err != nil {
				t.Fatal(err)
			}
			proxy := stallProxy(t, fmt.Sprintf("127.0.0.1:%d", r.Port), tc.cut)
			d, err := New(drivers.Config{DSN: "redis://:" + testenv.Canary + "@" + proxy})
			if err != nil {
				t.Fatal(err)
			}
			d.stall = 300 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			obj := drivers.Object{Name: "dump.rdb", Kind: drivers.KindDatabase, Database: objectDatabase, Format: FormatRDB}
			err = d.Dump(ctx, obj, io.Discard)
			if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "stalled") {
				t.Fatalf("Dump through a stalled link: %v (test deadline: %v), want an error naming the stall", err, ctx.Err())
			}
			t.Log(err)
		})
	}
}
