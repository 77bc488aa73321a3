package repo

import (
	"context"
	"fmt"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"remora.dev/remora/storage/file"
)

// TestThrottleRate: the dump stream passes at the rate asked, after a
// first burst, on the bubble's clock: N bytes take (N-burst)/rate.
func TestThrottleRate(t *testing.T) {
	for _, c := range []struct {
		rate, n int64
		write   int
	}{
		{1 << 20, 8 << 20, 1 << 20},
		{1 << 20, 5<<20 + 12345, 64 << 10},
		{50 << 20, 400 << 20, 1 << 20},
		{10 << 30, 40 << 30, 1 << 20},
	} {
		t.Run(fmt.Sprintf("%d/%d", c.rate, c.n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				th := newThrottle(c.rate, nil)
				w := th.writer(context.Background(), io.Discard)
				buf := make([]byte, c.write)
				start := time.Now()
				for left := c.n; left > 0; {
					k := min(left, int64(len(buf)))
					if _, err := w.Write(buf[:k]); err != nil {
						t.Fatal(err)
					}
					left -= k
				}
				took := time.Since(start)
				want := time.Duration(float64(c.n-int64(th.burst())) / float64(c.rate) * float64(time.Second))
				if d := took - want; d < -time.Millisecond || d > time.Millisecond {
					t.Errorf("took %v, want %v", took, want)
				}
				if th.tokens.Load() != c.n {
					t.Errorf("%d tokens taken for %d bytes", th.tokens.Load(), c.n)
				}
			})
		})
	}
}

// TestThrottleStopsWithContext: a throttled write waiting for tokens ends
// when the run is stopped.
func TestThrottleStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w := newThrottle(1<<20, nil).writer(ctx, io.Discard)
		_, err := w.Write(make([]byte, 10<<20))
		if err != context.DeadlineExceeded {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestBackupMaxRate: a backup with MaxRate sends every raw byte of its dump
// through the bucket, and waits for it what the rate asks: at most
// (bytes-burst)/rate, less only by the time the stream itself took.
func TestBackupMaxRate(t *testing.T) {
	const n, rate = 3 << 20, 1 << 20
	p := &Progress{}
	src := &source{sizes: map[string]int{"small": 1000, "big": n}}
	res, err := Backup(context.Background(), BackupOptions{Scope: scope, Driver: src, MaxRate: rate, Progress: p,
		Destinations: []Destination{{Storage: file.New(t.TempDir())}}})
	if err != nil {
		t.Fatal(err)
	}
	raw := res.Manifest.Objects[0].RawSize + res.Manifest.Objects[1].RawSize
	snap := p.Snapshot()
	if snap.ThrottledBytes != raw {
		t.Errorf("%d bytes through the bucket, want every raw byte, %d", snap.ThrottledBytes, raw)
	}
	most := float64(raw-rate) / rate
	if snap.ThrottledSeconds <= 0 || snap.ThrottledSeconds > most+0.001 {
		t.Errorf("waited %.3fs for tokens, want up to %.3fs", snap.ThrottledSeconds, most)
	}
}
