package repo

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/sys/unix"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/prio"
	"remora.dev/remora/storage/file"
)

// sampled is a source that, once it has written its first megabyte, looks
// at the niceness of its own thread and of every thread of the process:
// what the backup's goroutines run at while the dump is under way.
type sampled struct {
	source
	dumpNice int
	lowered  map[int]int // thread id -> nice, of the threads not at 0
}

func (s *sampled) Dump(ctx context.Context, obj drivers.Object, w io.Writer) error {
	buf := make([]byte, 1<<20)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", unix.Gettid()))
	if err != nil {
		return err
	}
	if s.dumpNice, err = prio.NiceOfStat(string(b)); err != nil {
		return err
	}
	nices, err := prio.ThreadNices()
	if err != nil {
		return err
	}
	s.lowered = map[int]int{}
	for tid, n := range nices {
		if n != 0 {
			s.lowered[tid] = n
		}
	}
	return s.source.Dump(ctx, obj, w)
}

// TestBackupWorkRunsLowered: at a lowered priority the dump, the
// compression workers and the uploads each run on a thread at the
// priority's niceness, measured in /proc while the backup runs; at normal
// none does. The lowered threads end with the backup.
func TestBackupWorkRunsLowered(t *testing.T) {
	for _, c := range []struct {
		p           prio.Priority
		compression string
		encrypt     bool
		nice        int
		threads     int // lowered threads at least: dump, compression, uploads
	}{
		{prio.Low, "zstd", true, 10, 1 + zstdWorkers() + 1 + 2},
		{prio.Idle, "zstd", false, 19, 1 + zstdWorkers() + 1 + 2},
		{prio.Low, "gzip", true, 10, 1 + 2},
		{prio.Low, "none", false, 10, 1 + 2},
		{prio.Normal, "zstd", false, 0, 0},
	} {
		t.Run(fmt.Sprintf("%s/%s", c.p, c.compression), func(t *testing.T) {
			src := &sampled{source: source{sizes: map[string]int{"big": 3 << 20}}}
			o := BackupOptions{Scope: scope, Driver: src, Compression: c.compression,
				Destinations: []Destination{{Storage: file.New(t.TempDir())}, {Storage: file.New(t.TempDir())}}}
			var err error
			if c.encrypt {
				id, _ := age.GenerateX25519Identity()
				if o.Recipients, err = ParseRecipients(id.Recipient().String()); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Backup(prio.With(context.Background(), c.p, nil), o); err != nil {
				t.Fatal(err)
			}
			at := 0
			for _, n := range src.lowered {
				if n == c.nice {
					at++
				}
			}
			if src.dumpNice != c.nice || at < c.threads {
				t.Errorf("dump at nice %d, %d threads at nice %d (%v); want %d and at least %d",
					src.dumpNice, at, c.nice, src.lowered, c.nice, c.threads)
			}
			for tid := range src.lowered {
				waitThreadGone(t, tid)
			}
		})
	}
}

// waitThreadGone waits for a lowered thread to end with its goroutine (the
// main thread, should it have been one, is parked for good instead).
func waitThreadGone(t *testing.T, tid int) {
	t.Helper()
	if tid == os.Getpid() {
		return
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lowered thread %d outlived the backup", tid)
		}
	}
}
