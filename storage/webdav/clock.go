package webdav

import (
	"context"
	"time"
)

// Now is the server's time by its own clock (the Date of its responses),
// which stamps the files' getlastmodified.
func (s *Storage) Now(ctx context.Context) (time.Time, error) { return s.clock.Now(ctx, s.Check) }
