package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"remora.dev/remora/internal/testenv"
)

// seedRedis stores about mib MiB of values: half small records with a blank
// filler, half values of realistic, poorly compressible data.
func seedRedis(b *testing.B, r *testenv.Redis, mib int) {
	b.Helper()
	ctx := context.Background()
	c := r.Client()
	defer c.Close()
	filler := strings.Repeat(" ", 84)
	var batch []any
	flush := func() {
		if err := c.MSet(ctx, batch...).Err(); err != nil {
			b.Fatalf("seed redis: %v", err)
		}
		batch = batch[:0]
	}
	for i, n := 0, 0; n < mib/2<<20; i++ {
		v := fmt.Sprintf(`{"aid":%d,"bid":%d,"abalance":0,"filler":"%s"}`, i, i/100000, filler)
		batch = append(batch, "account:"+strconv.Itoa(i), v)
		n += len(v) + 16
		if len(batch) == 2000 {
			flush()
		}
	}
	var docs strings.Builder
	if err := writeDocs(&docs, mib/2<<20, ""); err != nil {
		b.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSuffix(docs.String(), "\n"), "\n") {
		batch = append(batch, "doc:"+strconv.Itoa(i), line)
		if len(batch) == 2000 {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
}

// BenchmarkRedis: remora backup beside redis-cli --rdb (the limit: the
// same full-sync transfer) and the operator's shell pipeline, to the same S3
// server.
func BenchmarkRedis(b *testing.B) {
	mib, n := sizeMiB()*2/5, rounds() // about 1 GiB of data by default
	r := testenv.StartRedis(b)
	s3 := testenv.StartS3(b)
	s3.MakeBucket(b, "bench")
	seedRedis(b, r, mib)
	c := r.Client()
	keys, _ := c.DBSize(context.Background()).Result()
	mem, _ := c.Do(context.Background(), "MEMORY", "STATS").Result()
	c.Close()
	used := ""
	if m, ok := mem.(map[any]any); ok {
		used = fmt.Sprint(m["dataset.bytes"])
	} else if l, ok := mem.([]any); ok {
		for i := 0; i+1 < len(l); i += 2 {
			if l[i] == "dataset.bytes" {
				if v, ok := l[i+1].(int64); ok {
					used = fmt.Sprintf("%d MiB", v>>20)
				}
			}
		}
	}

	remora := remoraBinary(b)
	env := append(baseEnv(), s3.Env()...)
	env = append(env, "REMORA_DRIVER=redis", "REMORA_DSN="+r.DSN(), "REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=cache-0", "REMORA_LOG_LEVEL=warn")
	shellEnv := append(append(baseEnv(), "REDISCLI_AUTH="+testenv.Canary), rcloneEnv(s3)...)
	vars := map[string]string{"dump": "redis-cli -h 127.0.0.1 -p " + strconv.Itoa(r.Port) + " --rdb -"}

	b.ResetTimer()
	race(b, fmt.Sprintf("Redis backup, %d keys, %s of data", keys, used), n, s3, "bench", dumpTriple("redis-cli --rdb -", ".rdb.zst", remora, env, shellEnv, s3, vars))
	b.StopTimer()
}
