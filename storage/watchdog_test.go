package storage

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestWatchdog(t *testing.T) {
	var alarms atomic.Int32
	w := Watch(50*time.Millisecond, func() { alarms.Add(1) })
	for range 10 { // progress keeps it quiet
		time.Sleep(10 * time.Millisecond)
		w.Kick()
	}
	if n := alarms.Load(); n != 0 {
		t.Fatalf("%d alarms while there was progress", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alarms.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alarms.Load() == 0 {
		t.Fatal("no alarm after a stall")
	}
	w.Stop()
	w.Stop()
	time.Sleep(10 * time.Millisecond) // for an alarm that began before stop
	n := alarms.Load()
	time.Sleep(150 * time.Millisecond)
	if alarms.Load() != n {
		t.Fatal("an alarm after stop")
	}
}
