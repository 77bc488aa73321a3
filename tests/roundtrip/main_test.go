// Package roundtrip backs up real PostgreSQL, MariaDB and Redis servers and
// file trees with the remora binary, to S3 (versitygw) and to a directory, and
// restores them: under new names, in place, encrypted, gzip-compressed, after
// damage, and with the standard tools alone.
package roundtrip

import (
	"testing"

	"remora.dev/remora/internal/testenv"
)

// remora is the binary under test, built once (with the race detector when
// the tests have it).
var remora *testenv.Remora

func TestMain(m *testing.M) {
	remora = testenv.BuildRemora()
	testenv.Main(m)
}

// The exit codes remora documents.
const (
	exitUsage   = 2 // bad command line
	exitCorrupt = 3 // stored data does not match its manifest
)
