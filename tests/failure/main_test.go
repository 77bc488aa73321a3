// Package failure makes the remora binary's backups fail and checks that each
// failure is clear, leaves nothing that looks like a backup, and keeps the
// earlier ones: SIGKILL mid-upload, a full disk, a database that dies
// mid-dump under the agent, bad input of every kind, and several
// destinations with one missing.
package failure

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
