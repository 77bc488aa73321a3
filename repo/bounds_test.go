package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"

	"remora.dev/remora/drivers"
	"remora.dev/remora/storage/file"
)

// swallow is a driver whose restore reads everything it is given and counts
// it, as a tool writing the dump to disk would.
type swallow struct {
	source
	n int64
}

func (s *swallow) Restore(ctx context.Context, obj drivers.Object, r io.Reader, _ drivers.RestoreOptions) error {
	n, err := io.Copy(io.Discard, r)
	s.n += n
	return err
}

// replaceObject stands for a writer of the bucket: it stores body as the
// object of rec and makes the manifest agree with it, all but the raw size.
func replaceObject(t *testing.T, st *file.Storage, m *Manifest, i int, body []byte) {
	t.Helper()
	if _, err := st.Put(context.Background(), m.key(m.Objects[i].Key), bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	m.Objects[i].Size, m.Objects[i].SHA256 = int64(len(body)), hex.EncodeToString(sum[:])
}

// compressed is raw through the codec.
func compressed(t *testing.T, cod string, raw io.Reader) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, err := codecs[cod].newWriter(&b, writerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(zw, raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestReadStopsAtRawSize: an object that decompresses to more than the raw
// size its manifest records (a compression bomb: 64 MiB of zeros recorded as
// 1 MiB) is corrupt, and reading it stops there: the restore tool gets no
// more than the raw size before the error, and verify decompresses no
// further either. One that decompresses to less is corrupt too: the tool
// gets an error where it would have seen the end.
func TestReadStopsAtRawSize(t *testing.T) {
	const rawSize = 1 << 20
	for _, tc := range []struct {
		cod  string
		body int64 // bytes it decompresses to
	}{
		{"zstd", 64 << 20},
		{"gzip", 64 << 20},
		{"none", 8 << 20},
		{"zstd", rawSize - 1},
		{"gzip", rawSize - 1},
		{"none", rawSize - 1},
	} {
		name := tc.cod + "/bomb"
		if tc.body < rawSize {
			name = tc.cod + "/short"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := file.New(t.TempDir())
			drv := &swallow{source: source{sizes: map[string]int{"small": rawSize}}}
			res, err := Backup(ctx, BackupOptions{Scope: scope, Driver: drv, Compression: tc.cod, Destinations: []Destination{{Storage: st}}})
			if err != nil {
				t.Fatal(err)
			}
			m := res.Manifest
			if m.Objects[0].RawSize != rawSize {
				t.Fatalf("raw size %d", m.Objects[0].RawSize)
			}
			replaceObject(t, st, m, 0, compressed(t, tc.cod, io.LimitReader(zeros{}, tc.body)))

			err = Restore(ctx, st, m, drv, RestoreOptions{})
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("restore: err = %v, want ErrCorrupt", err)
			}
			if drv.n > rawSize {
				t.Errorf("restore: the tool read %d bytes of %d; the manifest records %d", drv.n, tc.body, rawSize)
			}

			if err := Verify(ctx, st, &Entry{Manifest: m}, VerifyOptions{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("verify: err = %v, want ErrCorrupt", err)
			}
			// What verify reads: the read chain, to its end or first error.
			o, err := openObject(ctx, st, m, nil, m.Objects[0], 0, true)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			n, err := io.Copy(io.Discard, o)
			if !errors.Is(err, ErrCorrupt) || n > rawSize {
				t.Errorf("read chain: %d bytes of %d, err %v; want ErrCorrupt by %d bytes", n, tc.body, err, rawSize)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestZstdWindowIsBounded: a zstd object that asks for a window larger than
// the decoder allows (memory it would take whatever its size) is refused as
// corrupt before it is decompressed.
func TestZstdWindowIsBounded(t *testing.T) {
	ctx := context.Background()
	st := file.New(t.TempDir())
	drv := &swallow{source: source{sizes: map[string]int{"small": 1 << 20}}}
	res, err := Backup(ctx, BackupOptions{Scope: scope, Driver: drv, Compression: "zstd", Destinations: []Destination{{Storage: st}}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw, err := zstd.NewWriter(&b, zstd.WithWindowSize(128<<20), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(zw, io.LimitReader(zeros{}, 1<<20))
	zw.Close()
	replaceObject(t, st, res.Manifest, 0, b.Bytes())
	if err := Restore(ctx, st, res.Manifest, drv, RestoreOptions{}); !errors.Is(err, ErrCorrupt) || drv.n != 0 {
		t.Fatalf("restore: err = %v after %d bytes, want ErrCorrupt before any", err, drv.n)
	}
}
