package storage

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestIdlePool: the most recently used waits first; past Max a connection
// is closed at once; one that waited Idle is closed and no longer given.
func TestIdlePool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &IdlePool[int]{Max: 2, Idle: time.Minute}
		var closed atomic.Int32
		closeFn := func() { closed.Add(1) }
		p.Put(1, closeFn)
		p.Put(2, closeFn)
		p.Put(3, closeFn) // the pool is full
		if closed.Load() != 1 {
			t.Fatalf("%d closed, want the one past Max", closed.Load())
		}
		if v, ok := p.Get(); !ok || v != 2 {
			t.Fatalf("Get = %d %v, want the most recent, 2", v, ok)
		}
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if v, ok := p.Get(); ok {
			t.Fatalf("Get = %d after its idle time", v)
		}
		if closed.Load() != 2 {
			t.Fatalf("%d closed, want 2", closed.Load())
		}
	})
}
