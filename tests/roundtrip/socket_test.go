package roundtrip

import (
	"fmt"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestSocketDSN backs up over the unix socket: postgres://user@/db?host=/dir.
func TestSocketDSN(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	env := []string{"REMORA_STORAGE=file://" + t.TempDir(), "REMORA_DRIVER=postgres",
		"REMORA_DSN=postgres://postgres@/postgres?host=" + pg.SocketDir + "&port=" + fmt.Sprint(pg.Port),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0"}
	remora.Must(t, env, "backup")
	if items := clitest.List(t, remora, env); len(items) != 1 || items[0].Databases[0] != "postgres" {
		t.Fatalf("list: %+v", items)
	}
}
