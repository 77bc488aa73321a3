package drivers

import (
	"context"
	"time"
)

// Reconnect runs session until ctx ends, and again after each failure,
// with a pause that grows from 1 s to 1 min and starts over after a
// session that lasted 2 minutes: how a log streamer (PostgreSQL's WAL,
// MySQL's binary log) keeps going through server restarts and outages.
// failed hears of each failure and the pause before the next try. It
// returns ctx's error.
func Reconnect(ctx context.Context, session func(context.Context) error, failed func(err error, pause time.Duration)) error {
	pause := time.Second
	for {
		began := time.Now()
		err := session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(began) > 2*time.Minute {
			pause = time.Second
		}
		failed(err, pause)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Minute)
	}
}
