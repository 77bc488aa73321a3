package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
)

// Azurite's built-in development account and its well-known key (Microsoft
// publishes both; they are no secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite is a running Azure Blob emulator.
type Azurite struct {
	Endpoint string // the blob service URL: http://127.0.0.1:port/devstoreaccount1
	Addr     string // host:port
	Dir      string // its data
	p        *proc
}

// StartAzurite starts Azurite's blob service in a temp dir. The launcher is
// found through REMORA_AZURITE, bin/azurite (`make bin/azurite`) or PATH
// (azurite-blob).
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	bin := lookPath("REMORA_AZURITE", "azurite-blob") // bin/azurite-blob is not made, but PATH may have it
	if p := filepath.Join(RepoRoot(), "bin", "azurite"); os.Getenv("REMORA_AZURITE") == "" && isExec(p) {
		bin = p
	}
	if bin == "" {
		Missing(t, "azurite (the Azure Blob test server)", "run `make bin/azurite` (needs Node and npm) or set REMORA_AZURITE")
	}
	dir, err := os.MkdirTemp("", "razurite")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var lastErr error
	for try := 0; try < 3; try++ {
		port := FreePort(t)
		a := &Azurite{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir}
		a.Endpoint = "http://" + a.Addr + "/" + AzuriteAccount
		cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", itoa(port), "--location", dir,
			"--disableTelemetry", "--skipApiVersionCheck", "--silent")
		cmd.Dir = dir
		// Azurite takes its accounts from AZURITE_ACCOUNTS: only the default one here.
		cmd.Env = append(os.Environ(), "AZURITE_ACCOUNTS=")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		a.p = start(t, cmd, filepath.Join(dir, fmt.Sprintf("azurite-%d.log", try)))
		lastErr = a.p.waitReady(func() error {
			c, err := net.DialTimeout("tcp", a.Addr, time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if lastErr == nil {
			t.Cleanup(func() { a.p.stop(syscall.SIGTERM) })
			return a
		}
		a.p.stop(syscall.SIGKILL)
	}
	t.Fatalf("azurite: %v", lastErr)
	return nil
}

// Client is an azblob client for the emulator with the account key, for test
// setup and checks.
func (a *Azurite) Client(t testing.TB) *azblob.Client {
	t.Helper()
	cred, err := azblob.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := azblob.NewClientWithSharedKeyCredential(a.Endpoint+"/", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CreateContainer creates a container.
func (a *Azurite) CreateContainer(t testing.TB, name string) {
	t.Helper()
	if _, err := a.Client(t).CreateContainer(context.Background(), name, nil); err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
}

// URL is the Remora storage URL for container/prefix on this emulator.
func (a *Azurite) URL(container, prefix string) string {
	return fmt.Sprintf("azblob://%s/%s/%s?endpoint=%s", AzuriteAccount, container, prefix, a.Endpoint)
}

// SetEnv gives this process the account key for the test's duration.
func (a *Azurite) SetEnv(t *testing.T) {
	t.Setenv("AZURE_STORAGE_SAS_TOKEN", "")
	os.Unsetenv("AZURE_STORAGE_SAS_TOKEN")
	t.Setenv("AZURE_STORAGE_KEY", AzuriteKey)
}

// Env is the environment that gives Remora the account key.
func (a *Azurite) Env() []string { return []string{"AZURE_STORAGE_KEY=" + AzuriteKey} }

// SAS is a container SAS token (a query string) valid for an hour, with the
// permissions given (a subset of "racwdl"), signed with key.
func (a *Azurite) SAS(t testing.TB, container, perms, key string) string {
	t.Helper()
	cred, err := azblob.NewSharedKeyCredential(AzuriteAccount, key)
	if err != nil {
		t.Fatal(err)
	}
	var p sas.ContainerPermissions
	for _, c := range perms {
		switch c {
		case 'r':
			p.Read = true
		case 'a':
			p.Add = true
		case 'c':
			p.Create = true
		case 'w':
			p.Write = true
		case 'd':
			p.Delete = true
		case 'l':
			p.List = true
		}
	}
	q, err := sas.BlobSignatureValues{
		Protocol: sas.ProtocolHTTPSandHTTP, StartTime: time.Now().Add(-time.Hour).UTC(), ExpiryTime: time.Now().Add(time.Hour).UTC(),
		ContainerName: container, Permissions: p.String(),
	}.SignWithSharedKey(cred)
	if err != nil {
		t.Fatal(err)
	}
	return q.Encode()
}
