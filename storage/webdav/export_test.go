package webdav

import "time"

// SetBackoffUnit shortens the wait before resuming a download, for a test.
func SetBackoffUnit(d time.Duration) (restore func()) {
	old := backoffUnit
	backoffUnit = d
	return func() { backoffUnit = old }
}
