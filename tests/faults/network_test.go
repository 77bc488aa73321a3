package faults

import (
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// randomFaults injects a fault into each request with probability p, chosen
// at random among kinds, but never into more than two attempts of the same
// request in a row, so every operation can get through within its retries.
func randomFaults(seed uint64, p float64, kinds ...testenv.Fault) func(r *http.Request, n int) testenv.Fault {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	tries := map[string]int{}
	return func(r *http.Request, n int) testenv.Fault {
		mu.Lock()
		defer mu.Unlock()
		id := r.Method + " " + r.URL.Path + "?" + r.URL.Query().Get("partNumber") + r.Header.Get("Range")
		tries[id]++
		if tries[id] > 2 || rng.Float64() >= p {
			return testenv.Pass
		}
		return kinds[rng.IntN(len(kinds))]
	}
}

// firstPutFails injects f into the first PUT, then follows rule: whatever the
// seed, the backup meets a fault it must retry (a random rule can leave every
// fault to the verify and the restore that follow).
func firstPutFails(f testenv.Fault, rule func(r *http.Request, n int) testenv.Fault) func(r *http.Request, n int) testenv.Fault {
	var done atomic.Bool
	return func(r *http.Request, n int) testenv.Fault {
		if r.Method == http.MethodPut && done.CompareAndSwap(false, true) {
			return f
		}
		return rule(r, n)
	}
}

// TestBackupThroughFaultyNetwork puts a proxy between Remora and the S3
// server that drops connections, stalls and answers 500/503: the backup, the
// verify and the restore all complete; with a lasting fault the backup fails
// with a clear error and nothing partial is listed.
func TestBackupThroughFaultyNetwork(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	testenv.SeedRandom(t, pg, "rnd", 24)
	proxy := testenv.StartFaultProxy(t, s3.Endpoint)
	url := "s3://backups/net?endpoint=" + proxy.Endpoint + "&region=" + s3.Region + "&insecure=true&part-size=5MiB&timeout=2s"
	env := append(s3.Env(), "REMORA_STORAGE="+url, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd")
	seed := testenv.FaultSeed(t)
	kinds := []testenv.Fault{testenv.Answer500, testenv.Answer503, testenv.CutRequest, testenv.StallBefore, testenv.CutResponse, testenv.StallResponse}

	// Faults before the response (the backup's PUTs have none to break).
	early := []testenv.Fault{testenv.Answer500, testenv.Answer503, testenv.CutRequest, testenv.StallBefore}
	proxy.Set(firstPutFails(early[seed%uint64(len(early))], randomFaults(seed, 0.3, kinds...)))
	start := time.Now()
	r := remora.Must(t, env, "backup")
	if !strings.Contains(r.Stderr, "retrying") {
		t.Errorf("no retry was logged:\n%s", r.Stderr)
	}
	remora.Must(t, env, "verify", "--all")
	remora.Must(t, env, "restore", "--latest", "--into", "rnd_copy")
	if a, b := testenv.Checksums(t, pg, "rnd"), testenv.Checksums(t, pg, "rnd_copy"); !reflect.DeepEqual(a, b) {
		t.Fatalf("restored through faults: %v, want %v", b, a)
	}
	t.Logf("seed %d: backup, verify and restore completed through %d injected faults %v in %s", seed, proxy.Total(), proxy.Injected(), time.Since(start).Round(time.Second))

	// A lasting fault: every upload answered 503.
	proxy.Set(func(r *http.Request, n int) testenv.Fault {
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			return testenv.Answer503
		}
		return testenv.Pass
	})
	lasting := append(env[:len(env):len(env)], "REMORA_STORAGE="+url+"&retries=2")
	r = remora.Run(t, lasting, "backup")
	if r.Code != 1 || !strings.Contains(r.Stderr, "SlowDown") || !strings.Contains(r.Stderr, "3 attempts") {
		t.Fatalf("backup against a lasting 503 = %s", r)
	}
	proxy.Set(nil)
	if got := clitest.List(t, remora, env); len(got) != 1 {
		t.Fatalf("after the failed backup, list shows %d backups, want 1", len(got))
	}
	testenv.NoCanary(t, "output", r.Stdout+r.Stderr)
}
