package roundtrip

import (
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestAzureBlob: a PostgreSQL backup to Azure Blob storage (Azurite) with the
// account key from AZURE_STORAGE_KEY, restored under a new name with the
// same data; the key shows in nothing remora prints; a missing container is
// one clear line.
func TestAzureBlob(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	az := testenv.StartAzurite(t)
	az.CreateContainer(t, "backups")
	testenv.SeedOdd(t, pg, "odd")
	want := testenv.Checksums(t, pg, "odd")
	env := append(az.Env(), "REMORA_STORAGE="+az.URL("backups", "prod"), "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=odd")

	for _, r := range []testenv.Result{
		remora.Must(t, env, "backup"),
		remora.Must(t, env, "restore", "--latest", "--into", "odd_azblob"),
	} {
		if strings.Contains(r.Stdout+r.Stderr, testenv.AzuriteKey) {
			t.Fatalf("remora printed the account key: %s", r)
		}
	}
	testenv.SameChecksums(t, "restored from Azure Blob", want, testenv.Checksums(t, pg, "odd_azblob"))
	if n := len(clitest.List(t, remora, env)); n != 1 {
		t.Errorf("%d backups listed, want 1", n)
	}

	missing := append(env, "REMORA_STORAGE="+az.URL("missing", "prod"))
	r := remora.Run(t, missing, "backup")
	if r.Code == 0 || !strings.Contains(r.Stderr, `container "missing" does not exist`) {
		t.Fatalf("backup to a missing container: %s", r)
	}
}
