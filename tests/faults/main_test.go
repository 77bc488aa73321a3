// Package faults breaks the remora binary's work at random moments, seeded
// by REMORA_FAULT_SEED (make soak runs these with fresh seeds): SIGKILL
// anywhere in a backup, a network to S3 that drops, stalls and fails
// requests; and SIGTERM during a backup. Nothing a broken run leaves may be
// taken for a backup, earlier backups stay intact, and the next backup
// succeeds.
package faults

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
