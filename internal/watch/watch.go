// Package watch follows files that Kubernetes swaps under a running process:
// the downward-API annotations and mounted Secrets, which the kubelet
// replaces by writing a new timestamped directory and renaming a ..data
// symlink.
package watch

import (
	"context"
	"log/slog"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Debounce is how long Dirs waits after a change before calling back: the
// kubelet's swap is several events.
const Debounce = 100 * time.Millisecond

// Dirs calls changed after anything in dirs changes (once per burst of
// events), and every poll as a safety net for a lost or impossible watch,
// until ctx ends. A watch that cannot be set up is logged and left to the
// poll.
func Dirs(ctx context.Context, dirs []string, poll time.Duration, log *slog.Logger, changed func()) {
	var events <-chan fsnotify.Event
	var errors <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		for _, d := range dirs {
			if err = w.Add(d); err != nil {
				break
			}
		}
		if err != nil {
			w.Close()
		}
	}
	if err != nil {
		if log != nil {
			log.Warn("cannot watch for changes; polling", "dirs", dirs, "every", poll.String(), "error", err)
		}
	} else {
		defer w.Close()
		events, errors = w.Events, w.Errors
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			debounce = time.After(Debounce)
		case <-errors:
			// The poll catches what the watch lost.
		case <-debounce:
			debounce = nil
			changed()
		case <-tick.C:
			changed()
		}
	}
}
