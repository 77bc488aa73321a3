package storage

import (
	"sync"
	"sync/atomic"
	"time"
)

// Watchdog calls its alarm when no progress has been reported for its stall
// time, and again after each further stall time without progress, until it
// is stopped. A download's or an upload's request is watched by one whose
// alarm cancels the request: a connection that stops moving data fails
// within the stall time instead of hanging.
type Watchdog struct {
	stall time.Duration
	alarm func()
	last  atomic.Int64 // when progress was last reported, in Unix nanoseconds
	done  chan struct{}
	once  sync.Once
}

// Watch starts a watchdog; the stall time counts from now.
func Watch(stall time.Duration, alarm func()) *Watchdog {
	w := &Watchdog{stall: stall, alarm: alarm, done: make(chan struct{})}
	w.Kick()
	go w.run()
	return w
}

// Kick reports progress.
func (w *Watchdog) Kick() { w.last.Store(time.Now().UnixNano()) }

// Stop ends the watch; only an alarm already under way may still finish. It
// may be called more than once.
func (w *Watchdog) Stop() { w.once.Do(func() { close(w.done) }) }

func (w *Watchdog) run() {
	tick := time.NewTicker(max(w.stall/10, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-tick.C:
			if time.Since(time.Unix(0, w.last.Load())) <= w.stall {
				continue
			}
			select {
			case <-w.done: // stopped while the tick was due
				return
			default:
			}
			w.Kick()
			w.alarm()
		}
	}
}
