package repo

import (
	"fmt"
	"io"
	"slices"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// codec is one compression format.
type codec struct {
	name      string
	ext       string // appended to the object's name
	newWriter func(io.Writer) (io.WriteCloser, error)
	newReader func(io.Reader) (io.ReadCloser, error)
}

var codecs = map[string]codec{
	"zstd": {
		name: "zstd",
		ext:  ".zst",
		newWriter: func(w io.Writer) (io.WriteCloser, error) {
			// Two goroutines and a 2 MiB window (zstd -3's) keep memory bounded
			// whatever the size of the dump.
			return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(2<<20))
		},
		newReader: func(r io.Reader) (io.ReadCloser, error) {
			// A frame asking for a window above 64 MiB (32 times what the
			// writer uses) is refused before it takes the memory; how far
			// the stream may expand is bounded by the read chain's raw size.
			d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecoderMaxMemory(64<<20))
			if err != nil {
				return nil, err
			}
			return d.IOReadCloser(), nil
		},
	},
	"gzip": {
		name: "gzip",
		ext:  ".gz",
		newWriter: func(w io.Writer) (io.WriteCloser, error) {
			// Parallel gzip over 1 MiB blocks, at most four in flight.
			zw, err := pgzip.NewWriterLevel(w, gzip.DefaultCompression)
			if err != nil {
				return nil, err
			}
			return zw, zw.SetConcurrency(1<<20, 4)
		},
		newReader: func(r io.Reader) (io.ReadCloser, error) {
			return gzip.NewReader(r)
		},
	},
	"none": {
		name:      "none",
		newWriter: func(w io.Writer) (io.WriteCloser, error) { return nopWriteCloser{w}, nil },
		newReader: func(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(r), nil },
	},
}

// Compressions are the names of the known compressions.
func Compressions() []string {
	var out []string
	for name := range codecs {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func codecByName(name string) (codec, error) {
	c, ok := codecs[name]
	if !ok {
		return codec{}, fmt.Errorf("compression %q is not known: want zstd, gzip or none", name)
	}
	return c, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
