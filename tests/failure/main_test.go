// Package failure makes the remora binary's backups fail and checks that each
// failure is clear, leaves nothing that looks like a backup, and keeps the
// earlier ones: SIGKILL mid-upload, a full disk, a database that dies
// mid-dump under the agent, bad input of every kind, and several
// destinations with one missing.
package failure

import (
	"testing"

	"remora.dev/remora/control"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// remora is the binary under test, built once (with the race detector when
// the tests have it).
var remora *testenv.Remora

func TestMain(m *testing.M) {
	remora = testenv.BuildRemora()
	testenv.Main(m)
}

func listJSON(t *testing.T, env []string) []clitest.ListItem {
	t.Helper()
	return clitest.List(t, remora, env)
}

func statusJSON(t *testing.T, env []string) control.Status {
	t.Helper()
	return clitest.Status(t, remora, env)
}

func startAgent(t *testing.T, env []string, socket string) *testenv.Process {
	t.Helper()
	return clitest.StartAgent(t, remora, env, socket)
}
