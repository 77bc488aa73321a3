package pzstd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func expData(n int) []byte {
	var b bytes.Buffer
	// pgbench_accounts-like rows
	for i := 1; b.Len() < n/2; i++ {
		fmt.Fprintf(&b, "%d\t%d\t0\t%84s\n", i, 1+i/100000, "")
	}
	r := rand.New(rand.NewPCG(1, 2))
	vocab := make([]string, 8000)
	for i := range vocab {
		w := make([]byte, 3+r.IntN(9))
		for j := range w {
			w[j] = byte('a' + r.IntN(26))
		}
		vocab[i] = string(w)
	}
	bw := bufio.NewWriter(&b)
	blob := make([]byte, 48)
	for b.Len()+bw.Buffered() < n {
		for i := 0; i < 64; i++ {
			bw.WriteString(vocab[r.IntN(len(vocab))])
			bw.WriteByte(' ')
		}
		for i := range blob {
			blob[i] = byte(r.Uint32())
		}
		fmt.Fprintf(bw, "\t\\\\x%x\n", blob)
	}
	bw.Flush()
	return b.Bytes()[:n]
}

type cw struct{ n int }

func (c *cw) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

func TestExp(t *testing.T) {
	if os.Getenv("PZEXP") == "" {
		t.Skip()
	}
	data := expData(256 << 20)
	run := func(name string, mk func(io.Writer) io.WriteCloser) {
		c := &cw{}
		start := time.Now()
		w := mk(c)
		for p := data; len(p) > 0; p = p[min(len(p), 256<<10):] {
			w.Write(p[:min(len(p), 256<<10)])
		}
		w.Close()
		d := time.Since(start)
		fmt.Printf("%-20s %8.1f MB/s  %d bytes  %.4f\n", name, float64(len(data))/d.Seconds()/1e6, c.n, float64(c.n)/float64(len(data)))
	}
	run("stream c2", func(w io.Writer) io.WriteCloser {
		e, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(2<<20))
		return e
	})
	run("stream c1", func(w io.Writer) io.WriteCloser {
		e, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(2<<20))
		return e
	})
	for _, cs := range []int{256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20, 8 << 20} {
		for _, wk := range []int{1, 2} {
			run(fmt.Sprintf("chunk %dK w%d", cs>>10, wk), func(w io.Writer) io.WriteCloser {
				z, _ := NewWriter(w, Options{Workers: wk, ChunkSize: cs})
				return z
			})
		}
	}
}
