package redis

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"remora.dev/remora/drivers"
)

// TestCopyUntilMark: the end marker of a diskless transfer is found however
// the stream is cut into reads, and never copied.
func TestCopyUntilMark(t *testing.T) {
	mark := []byte(strings.Repeat("m", 39) + "!")
	payload := bytes.Repeat([]byte("REDIS0011 data mm"), 10000)
	for _, r := range []io.Reader{
		bytes.NewReader(append(bytes.Clone(payload), mark...)),
		iotest.OneByteReader(bytes.NewReader(append(bytes.Clone(payload), mark...))),
		iotest.HalfReader(bytes.NewReader(append(bytes.Clone(payload), mark...))),
	} {
		var out bytes.Buffer
		if err := copyUntilMark(&out, r, mark); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), payload) {
			t.Fatalf("copied %d bytes, want %d", out.Len(), len(payload))
		}
	}
	// A stream cut before its marker is an error, not a short snapshot.
	if err := copyUntilMark(io.Discard, bytes.NewReader(payload), mark); err == nil {
		t.Fatal("a truncated transfer was accepted")
	}
}

func TestNew(t *testing.T) {
	for _, dsn := range []string{"redis://:pw@127.0.0.1:6379", "redis://user:pw@h:1/0", "rediss://h:6380", "unix:///run/redis.sock"} {
		if _, err := New(drivers.Config{DSN: dsn}); err != nil {
			t.Errorf("%s: %v", dsn, err)
		}
	}
	for _, cfg := range []drivers.Config{{DSN: "http://x"}, {DSN: "redis://h", Databases: []string{"a"}}, {DSN: "redis://h", DumpArgs: []string{"--x"}}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
