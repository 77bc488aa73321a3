package webdav

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"testing"
	"testing/iotest"
	"time"
)

// TestBodyGoesOutInLargeWrites: the transport copies a PUT's body to the
// connection through the body's WriteTo when it has one, else in 32 KiB
// writes, each a chunk header and a data write (two syscalls); the body
// hands it uploadBuf at a time, whatever size the reader's reads are, and
// every byte in order.
func TestBodyGoesOutInLargeWrites(t *testing.T) {
	data := make([]byte, 3*uploadBuf+12345)
	rand.Read(data)
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"whole reads", bytes.NewReader(data)},
		{"one byte at a time at first", io.MultiReader(iotest.OneByteReader(bytes.NewReader(data[:100])), bytes.NewReader(data[100:]))},
		{"reads of 32 KiB", &smallReads{r: bytes.NewReader(data), n: 32 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &watchedBody{r: tc.r, stall: time.Minute, timer: time.AfterFunc(time.Minute, func() {})}
			defer body.stop()
			req, err := http.NewRequest(http.MethodPut, "http://example.invalid/", body)
			if err != nil {
				t.Fatal(err)
			}
			var w sizes
			if _, err := io.Copy(&w, req.Body); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(w.buf.Bytes(), data) {
				t.Fatalf("copied %d bytes, differ from the %d read", w.buf.Len(), len(data))
			}
			for i, n := range w.writes[:len(w.writes)-1] {
				if n != uploadBuf {
					t.Fatalf("write %d of %d is %d bytes, want %d: %v", i, len(w.writes), n, uploadBuf, w.writes)
				}
			}
			if n, err := body.result(); n != int64(len(data)) || err != io.EOF {
				t.Fatalf("body counted %d bytes, %v; want %d, EOF", n, err, len(data))
			}
		})
	}
}

type sizes struct {
	buf    bytes.Buffer
	writes []int
}

func (s *sizes) Write(p []byte) (int, error) {
	s.writes = append(s.writes, len(p))
	return s.buf.Write(p)
}

type smallReads struct {
	r io.Reader
	n int
}

func (s *smallReads) Read(p []byte) (int, error) {
	if len(p) > s.n {
		p = p[:s.n]
	}
	return s.r.Read(p)
}
