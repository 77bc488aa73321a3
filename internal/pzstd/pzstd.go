// Package pzstd compresses a stream with zstd on several cores. The input is
// cut into fixed chunks, each compressed as an independent zstd frame by one
// of N workers, and the frames are written in input order. Concatenated
// frames are one valid zstd stream: `zstd -d`, and every other decoder, reads
// it as the concatenation of the chunks.
//
// Independent frames cost a little ratio (no match reaches across a chunk
// boundary) and buy linear speed-up: one zstd goroutine at level 3 manages
// about 300 MB/s, slower than a disk a physical base backup reads.
//
// Memory is bounded whatever the input's size. Each worker holds two chunks
// in flight (one being compressed, one queued or being written), each an
// input buffer of ChunkSize and an output buffer of at most ChunkSize plus a
// few bytes, and one encoder: its history and match tables, 2.8 MiB at
// level 3 with a 2 MiB window (the window is the chunk size, at most 2
// MiB). With the default 2 MiB chunks that is about 11 MiB per worker, 22
// MiB on two cores. Buffers and encoders are pooled and reused by the next
// Writer.
package pzstd

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// DefaultChunkSize is the chunk each frame holds: 2 MiB, the window of
// `zstd -3`. Measured on 256 MiB like the bench's PostgreSQL dump (half
// pgbench rows, half random words from an 8000-word vocabulary and random
// bytes) at level 3, against one unbroken stream with a 2 MiB window: 512
// KiB frames are 9.7% larger, 1 MiB 4.7%, 2 MiB 2.0%, 4 MiB 1.1%, 8 MiB
// 0.7%. Each frame relearns the vocabulary from nothing; 2 MiB keeps that
// loss to 2% for about 11 MiB per worker, where 4 MiB would take 19.
const DefaultChunkSize = 2 << 20

// Bounds on ChunkSize: below 4 KiB the frame headers and lost history cost
// ratio; above 64 MiB a frame would need more memory to decode than the
// readers of this repository allow.
const (
	MinChunkSize = 4 << 10
	MaxChunkSize = 64 << 20
)

// maxWindow is the longest match distance: 2 MiB, what `zstd -3` uses.
const maxWindow = 2 << 20

// Options tune a Writer; the zero value is the default.
type Options struct {
	// Workers is how many chunks are compressed at once; 0 means
	// GOMAXPROCS.
	Workers int
	// ChunkSize is the uncompressed size of each frame but the last; 0 means
	// DefaultChunkSize.
	ChunkSize int
	// Level is the zstd level; 0 means zstd.SpeedDefault (`zstd -3`).
	Level zstd.EncoderLevel
	// Go starts each of the Writer's goroutines (the workers and the one
	// writing frames out); nil means a go statement. A backup passes one
	// that runs them on threads at its priority (remora.dev/priority).
	Go func(func())

	// unpooled gives each worker a new encoder, which its Writer alone
	// uses: for tests in a synctest bubble, whose channels (inside the
	// encoder) must not reach a pool.
	unpooled bool
}

func (o Options) withDefaults() (Options, error) {
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedDefault
	}
	switch {
	case o.Workers < 0:
		return o, fmt.Errorf("pzstd: %d workers: want at least 1", o.Workers)
	case o.ChunkSize < MinChunkSize || o.ChunkSize > MaxChunkSize:
		return o, fmt.Errorf("pzstd: chunk size %d: want %d to %d bytes", o.ChunkSize, MinChunkSize, MaxChunkSize)
	case o.Level < zstd.SpeedFastest || o.Level > zstd.SpeedBestCompression:
		return o, fmt.Errorf("pzstd: level %d: want %d to %d", o.Level, zstd.SpeedFastest, zstd.SpeedBestCompression)
	}
	return o, nil
}

// window is the encoder's window for a chunk size: the chunk rounded up to
// a power of two, at most maxWindow. A larger window would hold history no
// match within one frame can use.
func window(chunkSize int) int {
	w := 1 << bits.Len(uint(chunkSize-1))
	return max(min(w, maxWindow), zstd.MinWindowSize)
}

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("pzstd: write after close")

// Writer compresses what is written to it into the underlying writer as a
// sequence of zstd frames. It must be closed, which writes the last frame
// and stops its goroutines. Write and Close are for one goroutine at a time;
// the underlying writer is called from one goroutine of the Writer's own.
type Writer struct {
	w    io.Writer
	o    Options
	pool *sync.Pool // of *chunk, for this chunk size

	cur    *chunk             // being filled; nil when none
	frames int                // chunks submitted
	closed bool               // Close was called
	slots  chan chan struct{} // one per chunk that may be in flight
	work   chan *chunk        // to the workers
	order  chan *chunk        // to the writing goroutine, in input order
	wg     sync.WaitGroup

	failed atomic.Bool // err is set
	mu     sync.Mutex
	err    error
}

// chunk is one frame's input and output.
type chunk struct {
	in, out []byte
	done    chan struct{} // the slot this chunk holds: a worker filled out
}

// NewWriter starts a Writer into w.
func NewWriter(w io.Writer, o Options) (*Writer, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	inFlight := 2 * o.Workers
	z := &Writer{
		w: w, o: o, pool: chunkPool(o.ChunkSize),
		slots: make(chan chan struct{}, inFlight),
		work:  make(chan *chunk, inFlight),
		order: make(chan *chunk, inFlight),
	}
	for range inFlight {
		z.slots <- make(chan struct{}, 1)
	}
	for range o.Workers {
		z.start(z.compress)
	}
	z.start(z.drain)
	return z, nil
}

// start runs fn on a goroutine of the Writer's, started by Options.Go.
func (z *Writer) start(fn func()) {
	z.wg.Add(1)
	run := func() {
		defer z.wg.Done()
		fn()
	}
	if z.o.Go == nil {
		go run()
		return
	}
	z.o.Go(run)
}

// Write copies p into chunks and hands every full chunk to the workers. It
// blocks while all chunks are in flight, and returns the first error of the
// underlying writer.
func (z *Writer) Write(p []byte) (int, error) {
	if z.closed {
		return 0, ErrClosed
	}
	if err := z.Err(); err != nil {
		return 0, err
	}
	n := 0
	for len(p) > 0 {
		if err := z.Err(); err != nil {
			return n, err
		}
		if z.cur == nil {
			z.cur = z.take()
		}
		k := copy(z.cur.in[len(z.cur.in):z.o.ChunkSize], p)
		z.cur.in = z.cur.in[:len(z.cur.in)+k]
		n, p = n+k, p[k:]
		if len(z.cur.in) == z.o.ChunkSize {
			z.submit()
		}
	}
	return n, nil
}

// Close compresses what is left, waits until every frame is written and the
// goroutines have stopped, and returns the first error. An empty input
// gives one empty frame, so that the output is a zstd stream all the same.
func (z *Writer) Close() error {
	if z.closed {
		return z.Err()
	}
	z.closed = true
	if z.cur == nil && z.frames == 0 && z.Err() == nil {
		z.cur = z.take()
	}
	if z.cur != nil && z.Err() == nil {
		z.submit()
	} else if z.cur != nil {
		z.release(z.cur)
		z.cur = nil
	}
	close(z.work)
	close(z.order)
	z.wg.Wait()
	return z.Err()
}

// Err is the first error of the underlying writer, if any.
func (z *Writer) Err() error {
	if !z.failed.Load() {
		return nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.err
}

func (z *Writer) fail(err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.err == nil {
		z.err = err
		z.failed.Store(true)
	}
}

// take waits for a slot and returns an empty chunk holding it.
func (z *Writer) take() *chunk {
	done := <-z.slots
	c := z.pool.Get().(*chunk)
	c.in, c.done = c.in[:0], done
	return c
}

// release frees a chunk and its slot.
func (z *Writer) release(c *chunk) {
	done := c.done
	c.done = nil
	z.pool.Put(c)
	z.slots <- done
}

// submit queues the current chunk for a worker and for the writing
// goroutine. Neither channel blocks: each has room for every slot.
func (z *Writer) submit() {
	c := z.cur
	z.cur = nil
	z.frames++
	z.order <- c
	z.work <- c
}

// compress is one worker: it compresses chunks with an encoder of its own
// until the work runs out. After a failure it skips the work.
func (z *Writer) compress() {
	var enc *zstd.Encoder
	if z.o.unpooled {
		enc = newEncoder(encoderKey{z.o.Level, window(z.o.ChunkSize)})
	} else {
		enc = getEncoder(z.o)
		defer putEncoder(z.o, enc)
	}
	for c := range z.work {
		c.out = c.out[:0]
		if !z.failed.Load() {
			c.out = enc.EncodeAll(c.in, c.out)
		}
		c.done <- struct{}{}
	}
}

// drain writes the frames in input order and frees their chunks. After a
// failure it goes on freeing them, so that Write and Close never wait for
// a slot that nothing would release.
func (z *Writer) drain() {
	for c := range z.order {
		<-c.done
		if !z.failed.Load() {
			n, err := z.w.Write(c.out)
			if err == nil && n < len(c.out) {
				err = io.ErrShortWrite
			}
			if err != nil {
				z.fail(err)
			}
		}
		z.release(c)
	}
}
