package testenv

import (
	"os"
	"strconv"
	"testing"
)

// FaultSeed is REMORA_FAULT_SEED (make soak sets a random one), else 1: the
// seed of the tests that inject faults or kill at random moments, printed so
// that a failure can be replayed.
func FaultSeed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv("REMORA_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("REMORA_FAULT_SEED=%q", s)
		}
		return n
	}
	return 1
}
