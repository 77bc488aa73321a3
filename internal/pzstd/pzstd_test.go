package pzstd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klauspost/compress/zstd"

	"remora.dev/remora/internal/testenv"
)

// compressible is n bytes like a database dump: lines of words from a small
// vocabulary, numbers, and runs of blank filler. Deterministic per seed.
func compressible(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	vocab := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"}
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "%d\t%d\t", r.IntN(1e6), r.IntN(100))
		for range 1 + r.IntN(12) {
			b.WriteString(vocab[r.IntN(len(vocab))])
			b.WriteByte(' ')
		}
		b.WriteString(strings.Repeat(" ", r.IntN(90)))
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

// random is n incompressible bytes.
func random(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// compress writes data through a Writer in pieces of at most piece bytes
// (all at once if 0) and returns the output.
func compress(t *testing.T, data []byte, o Options, piece int) []byte {
	t.Helper()
	var out bytes.Buffer
	z, err := NewWriter(&out, o)
	if err != nil {
		t.Fatal(err)
	}
	for p := data; len(p) > 0; {
		k := len(p)
		if piece > 0 {
			k = min(k, piece)
		}
		if n, err := z.Write(p[:k]); err != nil || n != k {
			t.Fatalf("Write: %d of %d, %v", n, k, err)
		}
		p = p[k:]
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// decode reads a stream with klauspost's decoder, as repo's zstd codec
// does.
func decode(t *testing.T, b []byte) []byte {
	t.Helper()
	d, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := io.ReadAll(d)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

// decodeCLI reads a stream with `zstd -d`, the reference implementation.
func decodeCLI(t *testing.T, b []byte) []byte {
	t.Helper()
	zstdBin, err := exec.LookPath("zstd")
	if err != nil {
		testenv.Missing(t, "zstd", "apt-get install zstd")
	}
	cmd := exec.Command(zstdBin, "-d", "-c", "-q")
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zstd -d: %v: %s", err, stderr.String())
	}
	return out
}

// noLeak fails the test if a Writer's goroutine is still running. Close
// has waited for them all; the wait here only covers the moment between a
// goroutine's last deferred call and its exit.
func noLeak(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; runtime.Gosched() {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "internal/pzstd.(*Writer)") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a Writer's goroutine outlived Close:\n%s", stacks)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	const small = MinChunkSize
	const big = DefaultChunkSize
	tests := []struct {
		name    string
		size    int
		chunk   int
		workers int
		piece   int // write size; 0: all at once
	}{
		{"empty", 0, small, 2, 0},
		{"one byte", 1, small, 2, 0},
		{"chunk-1", small - 1, small, 2, 0},
		{"chunk", small, small, 2, 0},
		{"chunk+1", small + 1, small, 2, 0},
		{"many chunks, 1 worker", 37*small + 123, small, 1, 0},
		{"many chunks, 2 workers", 37*small + 123, small, 2, 0},
		{"many chunks, 7 workers, odd writes", 37*small + 123, small, 7, 1000},
		{"many chunks, byte by byte", 5*small + 3, small, 3, 1},
		{"default chunk-1", big - 1, 0, 2, 0},
		{"default chunk+1", big + 1, 0, 2, 64 << 10},
		{"three default chunks", 3*big + 7, 0, 0, 0},
	}
	for _, tt := range tests {
		for kind, gen := range map[string]func(int, uint64) []byte{"compressible": compressible, "random": random} {
			t.Run(tt.name+", "+kind, func(t *testing.T) {
				data := gen(tt.size, uint64(tt.size))
				out := compress(t, data, Options{Workers: tt.workers, ChunkSize: tt.chunk}, tt.piece)
				if got := decode(t, out); !bytes.Equal(got, data) {
					t.Errorf("klauspost's decoder read %d bytes, want the %d written", len(got), len(data))
				}
				if got := decodeCLI(t, out); !bytes.Equal(got, data) {
					t.Errorf("zstd -d read %d bytes, want the %d written", len(got), len(data))
				}
				noLeak(t)
			})
		}
	}
}

// TestRoundTripProperty: random sizes, chunk sizes, worker counts and write
// sizes, over random and compressible data, read back by both decoders.
func TestRoundTripProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := range 40 {
		chunk := MinChunkSize + r.IntN(3*MinChunkSize)
		o := Options{Workers: 1 + r.IntN(4), ChunkSize: chunk}
		size := r.IntN(20 * chunk)
		data := compressible(size, uint64(i))
		if i%2 == 1 {
			data = random(size, uint64(i))
		}
		out := compress(t, data, o, r.IntN(3*chunk))
		if !bytes.Equal(decode(t, out), data) || !bytes.Equal(decodeCLI(t, out), data) {
			t.Fatalf("case %d (%d bytes, %+v): the output does not decode to the input", i, size, o)
		}
	}
	noLeak(t)
}

// TestRatio: independent 1 MiB frames compress compressible data within a
// few percent of klauspost's stream encoder at the same level and window
// (what repo used before).
func TestRatio(t *testing.T) {
	data := compressible(8<<20, 1)
	var stream bytes.Buffer
	enc, err := zstd.NewWriter(&stream, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(2<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	frames := compress(t, data, Options{}, 0)
	ratio := float64(len(frames)) / float64(stream.Len())
	t.Logf("%d bytes: stream encoder %d, 1 MiB frames %d (%.2f%%)", len(data), stream.Len(), len(frames), 100*(ratio-1))
	if ratio > 1.03 {
		t.Errorf("frames are %.1f%% larger than the stream", 100*(ratio-1))
	}
}

// failingWriter accepts limit bytes, then fails every write; short makes
// it report a short write without an error instead.
type failingWriter struct {
	limit int
	short bool
	n     int
}

var errStorage = errors.New("storage gone")

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) <= w.limit {
		w.n += len(p)
		return len(p), nil
	}
	if w.short {
		return w.limit - w.n, nil
	}
	return 0, errStorage
}

// TestWriteError: the underlying writer's error stops the Writer: Write
// returns it, Close returns it, and no goroutine is left.
func TestWriteError(t *testing.T) {
	tests := []struct {
		name string
		w    *failingWriter
		want error
	}{
		{"fails at once", &failingWriter{}, errStorage},
		{"fails later", &failingWriter{limit: 5000}, errStorage},
		{"short write", &failingWriter{limit: 5000, short: true}, io.ErrShortWrite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, err := NewWriter(tt.w, Options{Workers: 2, ChunkSize: MinChunkSize})
			if err != nil {
				t.Fatal(err)
			}
			data := random(MinChunkSize, 1)
			for err == nil {
				_, err = z.Write(data)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Write: %v, want %v", err, tt.want)
			}
			if _, err := z.Write(nil); !errors.Is(err, tt.want) {
				t.Errorf("empty Write after the failure: %v, want %v", err, tt.want)
			}
			if err := z.Close(); !errors.Is(err, tt.want) {
				t.Errorf("Close: %v, want %v", err, tt.want)
			}
			if _, err := z.Write(data); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Close: %v, want ErrClosed", err)
			}
			noLeak(t)
		})
	}
}

// TestCloseAfterPartialWriteFails: Close with a partly filled chunk after a
// failure returns the failure and leaves nothing running.
func TestCloseAfterPartialWriteFails(t *testing.T) {
	z, err := NewWriter(&failingWriter{}, Options{Workers: 1, ChunkSize: MinChunkSize})
	if err != nil {
		t.Fatal(err)
	}
	data := random(MinChunkSize+10, 1)
	for err == nil {
		_, err = z.Write(data)
	}
	if err := z.Close(); !errors.Is(err, errStorage) {
		t.Errorf("Close: %v", err)
	}
	if err := z.Close(); !errors.Is(err, errStorage) {
		t.Errorf("second Close: %v", err)
	}
	noLeak(t)
}

func TestOptions(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Workers: -1}, "-1 workers"},
		{Options{ChunkSize: MinChunkSize - 1}, "chunk size"},
		{Options{ChunkSize: MaxChunkSize + 1}, "chunk size"},
		{Options{Level: zstd.SpeedBestCompression + 1}, "level"},
	}
	for _, tt := range tests {
		if _, err := NewWriter(io.Discard, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want an error about %s", tt.o, err, tt.want)
		}
	}
}

// stalledWriter blocks every write until release is closed.
type stalledWriter struct{ release chan struct{} }

func (w stalledWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestMemoryBounded: with the underlying writer stalled, Write takes
// exactly two chunks per worker and then waits; released, everything is
// written.
func TestMemoryBounded(t *testing.T) {
	const chunk = MinChunkSize
	for _, workers := range []int{1, 3} {
		synctest.Test(t, func(t *testing.T) {
			w := stalledWriter{make(chan struct{})}
			z, err := NewWriter(w, Options{Workers: workers, ChunkSize: chunk, unpooled: true})
			if err != nil {
				t.Fatal(err)
			}
			var accepted atomic.Int64
			go func() {
				for range 100 {
					n, _ := z.Write(make([]byte, chunk/4))
					accepted.Add(int64(n))
				}
			}()
			synctest.Wait()
			if want := 2 * workers * chunk; accepted.Load() != int64(want) {
				t.Errorf("%d workers: %d bytes taken in with the writer stalled, want %d", workers, accepted.Load(), want)
			}
			close(w.release)
			synctest.Wait()
			if err := z.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestGoStartsEveryGoroutine: with Options.Go, every goroutine of the
// Writer (each worker, and the one writing frames) is started by it, so a
// backup can run them all at its priority; the output is the same.
func TestGoStartsEveryGoroutine(t *testing.T) {
	var started atomic.Int32
	var out bytes.Buffer
	z, err := NewWriter(&out, Options{Workers: 3, ChunkSize: MinChunkSize, Go: func(fn func()) {
		started.Add(1)
		go fn()
	}})
	if err != nil {
		t.Fatal(err)
	}
	in := bytes.Repeat([]byte("gentle "), 10000)
	if _, err := z.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if n := started.Load(); n != 3+1 {
		t.Errorf("Go started %d goroutines, want 4", n)
	}
	d, _ := zstd.NewReader(nil)
	defer d.Close()
	if got, err := d.DecodeAll(out.Bytes(), nil); err != nil || !bytes.Equal(got, in) {
		t.Errorf("round trip: %v", err)
	}
}
