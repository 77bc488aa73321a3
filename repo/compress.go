package repo

import (
	"fmt"
	"io"
	"runtime"
	"slices"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"remora.dev/remora/internal/pzstd"
)

// codec is one compression format.
type codec struct {
	name      string
	ext       string // appended to the object's name
	newWriter func(io.Writer, writerOptions) (io.WriteCloser, error)
	newReader func(io.Reader) (io.ReadCloser, error)
}

// writerOptions tune a compressor.
type writerOptions struct {
	// goFn, if set, starts the compressor's goroutines on threads at the
	// backup's lowered priority (prio.Go); nil: at the agent's own, and
	// the compressor may use goroutines it cannot start that way.
	goFn func(func())
}

var codecs = map[string]codec{
	"zstd": {
		name: "zstd",
		ext:  ".zst",
		newWriter: func(w io.Writer, o writerOptions) (io.WriteCloser, error) {
			// Independent 2 MiB frames at level 3 (zstd -3's window),
			// compressed on several cores: a dump or a base backup is not
			// held back by one core's 300 MB/s.
			return pzstd.NewWriter(w, pzstd.Options{Workers: zstdWorkers(), Go: o.goFn})
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
		newWriter: func(w io.Writer, o writerOptions) (io.WriteCloser, error) {
			if o.goFn != nil {
				// pgzip's goroutines are its own, and would run at the
				// agent's priority: at a lowered one, gzip compresses on
				// the caller's (lowered) thread alone. The stream is the
				// same gzip either way.
				return gzip.NewWriterLevel(w, gzip.DefaultCompression)
			}
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
		newWriter: func(w io.Writer, _ writerOptions) (io.WriteCloser, error) { return nopWriteCloser{w}, nil },
		newReader: func(r io.Reader) (io.ReadCloser, error) { return io.NopCloser(r), nil },
	},
}

// maxZstdWorkers caps the cores zstd compresses on. Each takes about 11 MiB
// whatever the size of the dump (see pzstd), and a sidecar without a CPU
// limit sees every core of its node: 4 keep it to 44 MiB, well within the
// sidecar's default 256 MiB limit, at about 1.2 GB/s.
const maxZstdWorkers = 4

// zstdWorkers is GOMAXPROCS (the container's CPU limit, if any), at most
// maxZstdWorkers.
func zstdWorkers() int { return min(runtime.GOMAXPROCS(0), maxZstdWorkers) }

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
