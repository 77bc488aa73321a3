package roundtrip

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// seedRedis writes every kind of value, in two logical databases, with
// expiring keys and binary data.
func seedRedis(t *testing.T, r *testenv.Redis) {
	t.Helper()
	ctx := context.Background()
	for db := 0; db < 2; db++ {
		c := goredis.NewClient(&goredis.Options{Network: "unix", Addr: r.Socket, Password: testenv.Canary, DB: db, Protocol: 2, DisableIdentity: true})
		p := c.Pipeline()
		for i := 0; i < 2000; i++ {
			p.Set(ctx, fmt.Sprintf("str:%d", i), fmt.Sprintf("value %d \x00\xff", i), 0)
		}
		for i := 0; i < 100; i++ {
			p.HSet(ctx, fmt.Sprintf("hash:%d", i), "a", i, "b", "x\ny", "c", "✓")
			p.RPush(ctx, fmt.Sprintf("list:%d", i), "1", "2", "3")
			p.SAdd(ctx, fmt.Sprintf("set:%d", i), "a", "b", i)
			p.ZAdd(ctx, fmt.Sprintf("zset:%d", i), goredis.Z{Score: float64(i), Member: "m"}, goredis.Z{Score: 1.5, Member: "n"})
			p.Set(ctx, fmt.Sprintf("ttl:%d", i), "expiring", time.Hour+time.Duration(i)*time.Minute)
		}
		for i := 0; i < 50; i++ {
			p.XAdd(ctx, &goredis.XAddArgs{Stream: "stream", Values: map[string]any{"n": i, "s": "event"}})
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		c.XGroupCreate(ctx, "stream", "workers", "0")
		c.Close()
	}
}

// redisState is, per database and key, the key's serialized value (DUMP) and
// whether it expires (and within how long, in minutes).
func redisState(t *testing.T, r *testenv.Redis) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for db := 0; db < 2; db++ {
		c := goredis.NewClient(&goredis.Options{Network: "unix", Addr: r.Socket, Password: testenv.Canary, DB: db, Protocol: 2, DisableIdentity: true})
		keys, err := c.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(keys)
		for _, k := range keys {
			var v string
			if c.Type(ctx, k).Val() == "set" {
				// A set's serialized form has no fixed member order.
				m := c.SMembers(ctx, k).Val()
				slices.Sort(m)
				v = strings.Join(m, ",")
			} else if v, err = c.Dump(ctx, k).Result(); err != nil {
				t.Fatal(err)
			}
			ttl := c.PTTL(ctx, k).Val()
			exp := "persistent"
			if ttl > 0 {
				exp = fmt.Sprintf("expires in %dm", ttl/time.Minute/10) // tens of minutes: the test takes seconds
			}
			out[fmt.Sprintf("db%d/%s", db, k)] = fmt.Sprintf("%x %s", v, exp)
		}
		c.Close()
	}
	return out
}

func sameRedis(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d keys, want %d", what, len(got), len(want))
	}
	bad := 0
	for k, v := range want {
		if got[k] != v {
			if bad++; bad <= 5 {
				t.Errorf("%s: key %s differs: got %.60s, want %.60s", what, k, got[k], v)
			}
		}
	}
}

// TestRedisRoundTrip backs up a password-protected Redis over SYNC, with
// diskless and disk-based replication, to S3 and to a directory, then
// restores online into the same running server after its data was replaced.
func TestRedisRoundTrip(t *testing.T) {
	t.Parallel()
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	for _, tc := range []struct {
		name, storage string
		env           []string
		server        []string
	}{
		{"s3-diskless", s3.URL("backups", "redis"), s3.Env(), []string{"--repl-diskless-sync", "yes"}},
		{"file-disk-based", "file://" + t.TempDir(), nil, []string{"--repl-diskless-sync", "no"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.StartRedis(t, tc.server...)
			seedRedis(t, r)
			want := redisState(t, r)
			env := append(tc.env, "REMORA_STORAGE="+tc.storage, "REMORA_DRIVER=redis", "REMORA_DSN="+r.DSN(),
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=redis-"+tc.name)
			remora.Must(t, env, "backup")
			items := clitest.List(t, remora, env)
			if len(items) != 1 || !strings.HasPrefix(items[0].Manifest.ServerVersion, "7.") {
				t.Fatalf("list: %+v", items)
			}
			remora.Must(t, env, "verify")

			ctx := context.Background()
			c := r.Client()
			defer c.Close()
			c.FlushAll(ctx)
			c.Set(ctx, "junk", "after the backup", 0)
			if r := remora.Run(t, env, "restore", "--latest"); r.Code == 0 || !strings.Contains(r.Stderr, "--yes") {
				t.Fatalf("restore over keys without --yes: %s", r)
			}
			clientBefore := c.ClientID(ctx).Val()
			remora.Must(t, env, "restore", "--latest", "--yes")
			sameRedis(t, "after the online restore", want, redisState(t, r))
			if id := c.ClientID(ctx).Val(); id != clientBefore {
				t.Errorf("the client was disconnected (id %d -> %d): the restore was not online", clientBefore, id)
			}
			if role := c.Do(ctx, "ROLE").Val().([]any)[0]; role != "master" {
				t.Errorf("role after restore: %v", role)
			}
		})
	}
}

// TestRedisACLUser backs up with an ACL user limited to what a backup needs.
func TestRedisACLUser(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	seedRedis(t, r)
	ctx := context.Background()
	c := r.Client()
	defer c.Close()
	if err := c.Do(ctx, "ACL", "SETUSER", "backup", "on", ">backup-"+testenv.Canary, "-@all", "+sync", "+psync", "+replconf", "+info", "+ping").Err(); err != nil {
		t.Fatal(err)
	}
	env := []string{"REMORA_STORAGE=file://" + t.TempDir(), "REMORA_DRIVER=redis", "REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=redis-0",
		fmt.Sprintf("REMORA_DSN=redis://backup:backup-%s@127.0.0.1:%d", testenv.Canary, r.Port)}
	remora.Must(t, env, "backup")
	res := remora.Run(t, append(env, fmt.Sprintf("REMORA_DSN=redis://backup:wrong@127.0.0.1:%d", r.Port)), "backup")
	if res.Code == 0 || !strings.Contains(res.Stderr, "login refused") {
		t.Fatalf("wrong password: %s", res)
	}
}

// TestRedisStandardTools: redis-server loads the stored RDB after zstd -d.
func TestRedisStandardTools(t *testing.T) {
	t.Parallel()
	zstd, err := exec.LookPath("zstd")
	if err != nil {
		testenv.Missing(t, "zstd", "apt-get install zstd")
	}
	r := testenv.StartRedis(t)
	seedRedis(t, r)
	want := redisState(t, r)
	dir := t.TempDir()
	env := []string{"REMORA_STORAGE=file://" + dir, "REMORA_DRIVER=redis", "REMORA_DSN=" + r.DSN(), "REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=redis-0"}
	remora.Must(t, env, "backup")
	obj := filepath.Join(dir, "shop/redis-0/redis", clitest.List(t, remora, env)[0].ID, "dump.rdb.zst")

	r2 := testenv.StartRedis(t)
	stopper := goredis.NewClient(&goredis.Options{Network: "unix", Addr: r2.Socket, Password: testenv.Canary, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	stopper.Shutdown(context.Background()) // an offline restore: place dump.rdb, then start
	stopper.Close()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", `"$ZSTD" -dc "$OBJ" > "$DIR/dump.rdb" && redis-check-rdb "$DIR/dump.rdb"`)
	cmd.Env = append(os.Environ(), "ZSTD="+zstd, "OBJ="+obj, "DIR="+r2.Dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zstd -d; redis-check-rdb: %v\n%s", err, out)
	}
	srv := testenv.StartRedisIn(t, r2.Dir, "--dbfilename", "dump.rdb")
	sameRedis(t, "redis-server from the RDB", want, redisState(t, srv))
}
