package sftp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/storage"
)

// TestOpenResumesAfterACut: a download whose connection drops or stalls
// part way goes on from where it stopped, on a new connection, and reads the
// whole object.
func TestOpenResumesAfterACut(t *testing.T) {
	srv := testenv.StartSFTP(t)
	srv.SetEnv(t)
	dir := mkdir(t, srv, "resume")
	data := make([]byte, 9<<20+777)
	rand.Read(data)
	for _, fault := range []testenv.TCPFault{testenv.CutConn, testenv.StallConn} {
		t.Run(fault.String(), func(t *testing.T) {
			proxy := testenv.StartTCPProxy(t, srv.Addr)
			// The known_hosts line names the server's address; the proxy's
			// must be known too.
			t.Setenv("REMORA_SFTP_KNOWN_HOSTS", strings.ReplaceAll(readFile(t, srv.KnownHosts), srv.Addr[len("127.0.0.1:"):], proxy.Addr[len("127.0.0.1:"):]))
			t.Setenv("REMORA_SFTP_KNOWN_HOSTS_FILE", "")
			var logs bytes.Buffer
			ctx := context.Background()
			st, err := storage.Open(ctx, "sftp://"+srv.User+"@"+proxy.Addr+dir+"?stall=1s", storage.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Put(ctx, "big", bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			r, err := st.Open(ctx, "big")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			proxy.Arm(fault, 3<<20) // part way through the download
			got, err := testenv.ReadAllOrHang(t, r)
			if err != nil {
				t.Fatalf("read %d bytes, then: %v", len(got), err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, want the %d written, unchanged", len(got), len(data))
			}
			if proxy.Fired() != 1 || proxy.Accepted() != 2 {
				t.Fatalf("%d faults, %d connections: the download was not broken and resumed", proxy.Fired(), proxy.Accepted())
			}
			if !strings.Contains(logs.String(), "storage download broke, resuming") || strings.Contains(logs.String(), testenv.Canary) {
				t.Fatalf("log: %s", logs.String())
			}
		})
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
