package smb

import (
	"context"
	"io"
	"sync"

	"github.com/cloudsoda/go-smb2"
)

// writesInFlight is how many writes of bufSize a Put keeps in flight. One
// at a time, the reader, the network and the server's disk take turns and
// each waits for the others; with a few, the server writes one while the
// next is on the wire and the Put reads the one after. It bounds a Put's
// buffers at writesInFlight × bufSize (4 MiB), plus as much in the
// requests the SMB client encodes from them.
const writesInFlight = 4

// chunk is a part of the file to write at an offset.
type chunk struct {
	buf []byte // a whole buffer, to give back
	n   int
	off int64
}

// copyTo writes r into f, up to writesInFlight writes at once, each at its
// own offset. It returns how much it read from r and the first error: the
// reader's (as it gave it), the server's (an smbErr), or ctx's; after one it
// stops reading and waits for the writes in flight.
func copyTo(ctx context.Context, f *smb2.File, r io.Reader) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	free := make(chan []byte, writesInFlight)
	for range writesInFlight {
		free <- nil // allocated at first use: a small object needs one buffer
	}
	chunks := make(chan chunk)
	var wg sync.WaitGroup
	for range writesInFlight {
		wg.Go(func() {
			for c := range chunks {
				if _, err := f.WriteAt(c.buf[:c.n], c.off); err != nil {
					cancel(smbErr{err})
				}
				free <- c.buf
			}
		})
	}
	n, rerr := readChunks(ctx, r, free, chunks)
	close(chunks)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return n, err
	}
	return n, rerr
}

// readChunks reads r into the free buffers and sends them to be written,
// until r ends or ctx does.
func readChunks(ctx context.Context, r io.Reader, free chan []byte, chunks chan<- chunk) (int64, error) {
	var off int64
	for {
		var buf []byte
		select {
		case buf = <-free:
		case <-ctx.Done():
			return off, nil // copyTo returns ctx's cause
		}
		if buf == nil {
			buf = make([]byte, bufSize)
		}
		m, err := io.ReadFull(r, buf)
		if m > 0 {
			select {
			case chunks <- chunk{buf: buf, n: m, off: off}:
			case <-ctx.Done():
				return off, nil
			}
			off += int64(m)
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return off, nil
		default:
			return off, err
		}
	}
}
