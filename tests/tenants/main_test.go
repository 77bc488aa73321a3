// Package tenants checks that namespaces sharing one bucket are kept apart by
// their keys, with the bucket policy the README gives, on a real S3 server
// (versitygw with its own users), through the remora binary.
package tenants

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
