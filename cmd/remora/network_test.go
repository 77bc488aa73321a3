package main

import (
	"math/rand/v2"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
)

// faultSeed is REMORA_FAULT_SEED (make soak sets a random one), else fixed.
func faultSeed(t *testing.T) uint64 {
	if s := os.Getenv("REMORA_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("REMORA_FAULT_SEED=%q", s)
		}
		return n
	}
	return 1
}

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

// TestBackupThroughFaultyNetwork puts a proxy between Remora and the S3
// server that drops connections, stalls and answers 500/503: the backup, the
// verify and the restore all complete; with a lasting fault the backup fails
// with a clear error and nothing partial is listed.
func TestBackupThroughFaultyNetwork(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	seedRandom(t, pg, "rnd", 24)
	proxy := testenv.StartFaultProxy(t, s3.Endpoint)
	url := "s3://backups/net?endpoint=" + proxy.Endpoint + "&region=" + s3.Region + "&insecure=true&part-size=5MiB&timeout=2s"
	env := append(s3.Env(), "REMORA_STORAGE="+url, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd")
	seed := faultSeed(t)
	kinds := []testenv.Fault{testenv.Answer500, testenv.Answer503, testenv.CutRequest, testenv.StallBefore, testenv.CutResponse, testenv.StallResponse}

	proxy.Set(randomFaults(seed, 0.3, kinds...))
	start := time.Now()
	r := mustRemora(t, env, "backup")
	if !strings.Contains(r.stderr, "retrying") {
		t.Errorf("no retry was logged:\n%s", r.stderr)
	}
	mustRemora(t, env, "verify", "--all")
	mustRemora(t, env, "restore", "--latest", "--into", "rnd_copy")
	if a, b := checksums(t, pg, "rnd"), checksums(t, pg, "rnd_copy"); !reflect.DeepEqual(a, b) {
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
	time.Sleep(1100 * time.Millisecond) // a new backup ID
	lasting := append(env[:len(env):len(env)], "REMORA_STORAGE="+url+"&retries=2")
	r = remora(t, lasting, "backup")
	if r.code != 1 || !strings.Contains(r.stderr, "SlowDown") || !strings.Contains(r.stderr, "3 attempts") {
		t.Fatalf("backup against a lasting 503 = %s", r)
	}
	proxy.Set(nil)
	if got := listJSON(t, env); len(got) != 1 {
		t.Fatalf("after the failed backup, list shows %d backups, want 1", len(got))
	}
	noCanary(t, "output", r.stdout+r.stderr)
}
