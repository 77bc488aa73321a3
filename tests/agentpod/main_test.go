// Package agentpod runs `remora agent` as a pod's sidecar would: beside a
// real database, with a temp directory for the shared volumes and a
// downward-API directory the tests update as the kubelet does. It covers the
// annotations, metrics, notifications, stopping, and one backup or restore at
// a time in a pod.
package agentpod

import (
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
)

// remora is the binary under test, built once (with the race detector when
// the tests have it).
var remora *testenv.Remora

func TestMain(m *testing.M) {
	remora = testenv.BuildRemora()
	testenv.Main(m)
}

// stopAgent sends SIGTERM and waits up to limit for the agent to exit 0.
func stopAgent(t *testing.T, ag *testenv.Process, limit time.Duration) {
	t.Helper()
	ok, err := ag.Stop(syscall.SIGTERM, limit)
	if !ok {
		t.Fatalf("the agent did not stop within %s of SIGTERM:\n%s", limit, ag.Logs())
	}
	if err != nil {
		t.Errorf("agent exit: %v\n%s", err, ag.Logs())
	}
}
