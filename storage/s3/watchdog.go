package s3

import (
	"sync"
	"sync/atomic"
	"time"
)

// watchdog calls its alarm when no progress has been reported for its stall
// time, and again after each further stall time without progress, until it is
// stopped.
type watchdog struct {
	stall time.Duration
	alarm func()
	last  atomic.Int64 // when progress was last reported, in Unix nanoseconds
	done  chan struct{}
	once  sync.Once
}

// watch starts a watchdog; the stall time counts from now.
func watch(stall time.Duration, alarm func()) *watchdog {
	w := &watchdog{stall: stall, alarm: alarm, done: make(chan struct{})}
	w.kick()
	go w.run()
	return w
}

// kick reports progress.
func (w *watchdog) kick() { w.last.Store(time.Now().UnixNano()) }

// stop ends the watch; only an alarm already under way may still finish. It
// may be called more than once.
func (w *watchdog) stop() { w.once.Do(func() { close(w.done) }) }

func (w *watchdog) run() {
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
			w.kick()
			w.alarm()
		}
	}
}
