// Package cluster runs `remora webhook` against a real kube-apiserver (and
// etcd) with the chart's webhook configuration: pods are injected, invalid
// annotations denied, certificates rotated while the API server calls it, and
// pods still admitted with the webhook down.
package cluster

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
