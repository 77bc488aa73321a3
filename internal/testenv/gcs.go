package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// GCS is a running Google Cloud Storage emulator (fake-gcs-server), plain
// HTTP, without authentication.
type GCS struct {
	Addr string // 127.0.0.1:port
	Dir  string // the filesystem backend's root: buckets are directories here
	p    *proc
}

// StartGCS starts fake-gcs-server with its filesystem backend in a temp
// dir. The binary is found through REMORA_FAKE_GCS, bin/fake-gcs-server or
// PATH.
func StartGCS(t testing.TB) *GCS {
	t.Helper()
	bin := lookPath("REMORA_FAKE_GCS", "fake-gcs-server")
	if bin == "" {
		Missing(t, "fake-gcs-server (the GCS test server)", "run `make bin/fake-gcs-server` or set REMORA_FAKE_GCS")
	}
	dir, err := os.MkdirTemp("", "rgcs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	var lastErr error
	for try := 0; try < 3; try++ {
		port := FreePort(t)
		g := &GCS{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: data}
		cmd := exec.Command(bin, "-scheme", "http", "-host", "127.0.0.1", "-port", itoa(port),
			"-backend", "filesystem", "-filesystem-root", data,
			"-external-url", "http://"+g.Addr, "-public-host", g.Addr, "-log-level", "warn")
		cmd.Env = append(os.Environ(), "STORAGE_EMULATOR_HOST=")
		// A test binary killed by its timeout leaves no server behind.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		g.p = start(t, cmd, filepath.Join(dir, fmt.Sprintf("fake-gcs-server-%d.log", try)))
		lastErr = g.p.waitReady(func() error {
			resp, err := http.Get(g.Endpoint() + "b?project=test")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("list buckets: %s", resp.Status)
			}
			return nil
		})
		if lastErr == nil {
			t.Cleanup(func() { g.p.stop(syscall.SIGTERM) })
			return g
		}
		g.p.stop(syscall.SIGKILL)
	}
	t.Fatalf("fake-gcs-server: %v", lastErr)
	return nil
}

// Endpoint is the JSON API's base URL.
func (g *GCS) Endpoint() string { return "http://" + g.Addr + "/storage/v1/" }

// MakeBucket creates a bucket.
func (g *GCS) MakeBucket(t testing.TB, name string) {
	t.Helper()
	resp, err := http.Post(g.Endpoint()+"b?project=test", "application/json", strings.NewReader(fmt.Sprintf(`{"name":%q}`, name)))
	if err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("make bucket %s: %s", name, resp.Status)
	}
}

// URL is the Remora storage URL for bucket/prefix on this server, without
// authentication.
func (g *GCS) URL(bucket, prefix string) string {
	return fmt.Sprintf("gs://%s/%s?endpoint=%s&anonymous=true", bucket, prefix, g.Endpoint())
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (g *GCS) Kill() { g.p.stop(syscall.SIGKILL) }
