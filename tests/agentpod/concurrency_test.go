package agentpod

import (
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"remora.dev/remora/control"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// TestOneThingAtATime: in a pod, a backup asked for twice at once runs once
// and says so to the second caller; a restore while a backup runs is refused
// before it touches anything; a hand-run `remora backup` without the agent
// refuses while the pod's lock is held.
func TestOneThingAtATime(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	testenv.SeedRandom(t, pg, "rnd", 8)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	proxy := testenv.StartFaultProxy(t, s3.Endpoint)
	podinfo := t.TempDir()
	testenv.WriteDownwardAPI(t, podinfo, map[string]string{"remora.dev/schedule": "@yearly"})
	sockDir := testenv.SocketDir(t)
	sock := filepath.Join(sockDir, "agent.sock")
	url := "s3://backups/c?endpoint=" + proxy.Endpoint + "&region=" + s3.Region + "&insecure=true&timeout=2s"
	env := append(s3.Env(), "REMORA_STORAGE="+url, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd", "REMORA_ANNOTATIONS="+filepath.Join(podinfo, "annotations"),
		"REMORA_SOCKET="+sock, "REMORA_METRICS_ADDR=127.0.0.1:0")
	clitest.StartAgent(t, remora, env, sock)
	remora.Must(t, env, "backup", "--wait")

	// Uploads now stall: the next backup hangs in its first upload.
	var stall atomic.Bool
	stall.Store(true)
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		if stall.Load() && r.Method == http.MethodPut {
			return testenv.StallBefore
		}
		return testenv.Pass
	})
	var wg sync.WaitGroup
	outs := make([]testenv.Result, 2)
	for i := range outs {
		wg.Go(func() { outs[i] = remora.Run(t, env, "backup") })
	}
	wg.Wait()
	joined := outs[0].Stderr + outs[1].Stderr
	if strings.Count(joined, "started by the agent") != 1 || strings.Count(joined, "already running") != 1 {
		t.Fatalf("two requests at once:\n%s\n%s", outs[0], outs[1])
	}
	if st := clitest.Status(t, remora, env); st.Running == nil {
		t.Fatalf("no backup running: %+v", st)
	}

	r := remora.Run(t, env, "restore", "--latest", "--database", "rnd", "--into", "rnd_copy", "--yes")
	if r.Code != 1 || !strings.Contains(r.Stderr, "restore refused, nothing was changed: a backup is running in this pod (run 2") {
		t.Fatalf("restore during a backup: %s", r)
	}
	if got := pg.Psql(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'rnd_copy'"); got != "0" {
		t.Fatal("the refused restore created the database")
	}

	// Without the agent answering, a hand-run backup takes the lock itself.
	other := append(env[:len(env):len(env)], "REMORA_SOCKET="+filepath.Join(sockDir, "nobody.sock"))
	if r := remora.Run(t, other, "backup"); r.Code != 1 || !strings.Contains(r.Stderr, "another backup or a restore is running") {
		t.Fatalf("hand-run backup while the agent backs up: %s", r)
	}

	// Let the stalled upload through: the backup finishes, and then the
	// restore runs.
	stall.Store(false)
	for start := time.Now(); clitest.Status(t, remora, env).Running != nil; time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > 60*time.Second {
			t.Fatal("the backup did not finish after the stall ended")
		}
	}
	remora.Must(t, env, "restore", "--latest", "--database", "rnd", "--into", "rnd_copy", "--yes")
}

func TestLock(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	release, err := control.Lock(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := control.Lock(sock); err != control.ErrBusy {
		t.Fatalf("second Lock = %v, want ErrBusy", err)
	}
	release()
	again, err := control.Lock(sock)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	again()
	if r, err := control.Lock("/nonexistent/dir/agent.sock"); err != nil {
		t.Fatalf("Lock outside a pod: %v", err)
	} else {
		r()
	}
}
