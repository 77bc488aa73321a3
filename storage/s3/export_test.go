package s3

import "time"

// SetBackoffUnit shortens the wait between attempts for a test.
func SetBackoffUnit(d time.Duration) (restore func()) {
	old := backoffUnit
	backoffUnit = d
	return func() { backoffUnit = old }
}
