package redis

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/testenv"
)

// TestTemporaryServerNeedsItsPassword: the redis-server a restore loads the
// snapshot into refuses a client without its random password (anyone on the
// host could otherwise read the snapshot or write into the restore), and the
// password is in no process's arguments, where ps would show it.
func TestTemporaryServerNeedsItsPassword(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server", "apt-get install redis-server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), `snap "dir" \ x`) // quoted in the configuration
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	src, err := startSource(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.stop()

	anon := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", src.port), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); !goredis.HasErrorPrefix(err, "NOAUTH") {
		t.Fatalf("a client without the password got %v, want NOAUTH", err)
	}
	if err := src.client.Ping(ctx).Err(); err != nil {
		t.Fatalf("the restore's own client: %v", err)
	}
	pw := src.client.Options().Password
	if len(pw) != 64 {
		t.Fatalf("the password is %d characters, want 64 (32 random bytes in hex)", len(pw))
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", src.srv.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cmdline, []byte(pw)) {
		t.Errorf("the password is in redis-server's arguments: %q", cmdline)
	}
}

// TestRestoreLogsInToTheTemporaryServer: the target replicates from the
// temporary server with its password, and gets its own masterauth back.
func TestRestoreLogsInToTheTemporaryServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	from, to := testenv.StartRedis(t), testenv.StartRedis(t)
	fc, tc := from.Client(), to.Client()
	defer fc.Close()
	defer tc.Close()
	for _, err := range []error{fc.Set(ctx, "restored", "yes", 0).Err(), tc.Set(ctx, "replaced", "yes", 0).Err(),
		tc.ConfigSet(ctx, "masterauth", "the-target's-own").Err()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	src, err := New(drivers.Config{DSN: from.DSN()})
	if err != nil {
		t.Fatal(err)
	}
	var rdb bytes.Buffer
	obj := drivers.Object{Name: "dump.rdb", Kind: drivers.KindDatabase, Database: objectDatabase, Format: FormatRDB}
	if err := src.Dump(ctx, obj, &rdb); err != nil {
		t.Fatal(err)
	}
	dst, err := New(drivers.Config{DSN: to.DSN()})
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Restore(ctx, obj, &rdb, drivers.RestoreOptions{Yes: true}); err != nil {
		t.Fatal(err)
	}
	keys, err := tc.Keys(ctx, "*").Result()
	if err != nil || len(keys) != 1 || keys[0] != "restored" {
		t.Errorf("keys after the restore: %v (%v), want [restored]", keys, err)
	}
	if got := tc.ConfigGet(ctx, "masterauth").Val()["masterauth"]; got != "the-target's-own" {
		t.Errorf("masterauth after the restore: %q, want the target's own back", got)
	}
}
