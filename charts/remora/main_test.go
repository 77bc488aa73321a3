package chart

import (
	"testing"

	"remora.dev/remora/internal/testenv"
)

// remora is the binary whose scraped metrics feed the alerts' tests, built
// once (with the race detector when the tests have it).
var remora *testenv.Remora

func TestMain(m *testing.M) {
	remora = testenv.BuildRemora()
	testenv.Main(m)
}
