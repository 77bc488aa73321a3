package ftp

import (
	"net"
	"time"

	"remora.dev/remora/storage"
)

// SetWrap wraps every connection s makes from now on (data tells a data
// connection from the control one), for tests that break them.
func SetWrap(s storage.Storage, wrap func(c net.Conn, data bool) net.Conn) {
	s.(*Storage).wrap = wrap
}

// SetIdleTime sets how long a connection s no longer uses stays open.
func SetIdleTime(s storage.Storage, d time.Duration) {
	s.(*Storage).pool.Idle = d
}
