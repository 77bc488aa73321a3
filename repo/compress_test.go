package repo

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/zstd"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/pzstd"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage/file"
)

// keep is a driver whose restore keeps what it is given.
type keep struct {
	source
	got bytes.Buffer
}

func (k *keep) Restore(ctx context.Context, obj drivers.Object, r io.Reader, _ drivers.RestoreOptions) error {
	_, err := io.Copy(&k.got, r)
	return err
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}

// TestZstdWritesParallelFrames: the zstd codec writes the input as
// independent frames of pzstd.DefaultChunkSize, which the parallel encoder
// compresses on several cores, and `zstd -d` reads them as one stream.
func TestZstdWritesParallelFrames(t *testing.T) {
	raw := randomBytes(2*pzstd.DefaultChunkSize + 100)
	out := compressed(t, "zstd", bytes.NewReader(raw))
	var h zstd.Header
	if err := h.Decode(out); err != nil {
		t.Fatal(err)
	}
	if !h.HasFCS || h.FrameContentSize != pzstd.DefaultChunkSize {
		t.Errorf("first frame holds %d bytes (known: %v), want a frame of %d", h.FrameContentSize, h.HasFCS, pzstd.DefaultChunkSize)
	}
	zstdBin, err := exec.LookPath("zstd")
	if err != nil {
		testenv.Missing(t, "zstd", "apt-get install zstd")
	}
	cmd := exec.Command(zstdBin, "-d", "-c", "-q")
	cmd.Stdin = bytes.NewReader(out)
	got, err := cmd.Output()
	if err != nil || !bytes.Equal(got, raw) {
		t.Errorf("zstd -d: %d bytes of %d, %v", len(got), len(raw), err)
	}
}

// TestOldZstdStreamRestores: an object written by the single-stream encoder
// of earlier versions restores unchanged: the reader is the same.
func TestOldZstdStreamRestores(t *testing.T) {
	ctx := context.Background()
	st := file.New(t.TempDir())
	const size = 3 << 20
	drv := &keep{source: source{sizes: map[string]int{"small": size}}}
	res, err := Backup(ctx, BackupOptions{Scope: scope, Driver: drv, Compression: "zstd", Destinations: []Destination{{Storage: st}}})
	if err != nil {
		t.Fatal(err)
	}
	raw := randomBytes(size)
	var old bytes.Buffer
	zw, err := zstd.NewWriter(&old, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2), zstd.WithWindowSize(2<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	replaceObject(t, st, res.Manifest, 0, old.Bytes())
	if err := Restore(ctx, st, res.Manifest, drv, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(drv.got.Bytes(), raw) {
		t.Errorf("restored %d bytes, not the %d written", drv.got.Len(), len(raw))
	}
}
