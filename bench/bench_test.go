// Package bench measures Remora against the tools it stands on, in one run on
// one machine, and prints ratios: `make bench`. The PostgreSQL database is
// REMORA_BENCH_MIB MiB (default 2048), MariaDB and Redis 2/5 of that (about 1
// GiB of data each), and the small PostgreSQL database for the memory
// comparison a quarter; each storage backend receives a file of
// REMORA_BENCH_STORAGE_MIB MiB (default 1024), and a quarter of it for the
// memory comparison; REMORA_BENCH_ROUNDS (default 3) sets the rounds. Contenders alternate run by
// run, and every figure is printed beside a baseline measured in the same run.
package bench

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"remora.dev/remora/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// sizeMiB is the size of the PostgreSQL database; the others derive from it.
func sizeMiB() int { return envInt("REMORA_BENCH_MIB", 2048) }

func rounds() int { return envInt("REMORA_BENCH_ROUNDS", 3) }

func newRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
