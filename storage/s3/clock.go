package s3

import (
	"context"
	"time"
)

// Now is the storage's time by its own clock (the Date of its responses),
// which stamps objects and multipart uploads.
func (s *Storage) Now(ctx context.Context) (time.Time, error) { return s.clock.Now(ctx, s.Check) }
