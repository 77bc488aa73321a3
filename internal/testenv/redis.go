package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// Redis is a running Redis server on 127.0.0.1:Port and the unix socket
// Socket, with the password Canary for the default user.
type Redis struct {
	Port   int
	Socket string
	Dir    string
	p      *proc
}

// StartRedis starts redis-server with no persistence; extra are more
// configuration arguments (e.g. "--repl-diskless-sync", "no").
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	dir, err := os.MkdirTemp("", "rrd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return StartRedisIn(t, dir, extra...)
}

// StartRedisIn starts redis-server with its data directory dir, where it
// loads a dump.rdb it finds.
func StartRedisIn(t testing.TB, dir string, extra ...string) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server", "apt-get install redis-server")
	}
	var lastErr error
	for try := 0; try < 3; try++ {
		r := &Redis{Port: FreePort(t), Socket: filepath.Join(dir, fmt.Sprintf("redis-%d.sock", try)), Dir: dir}
		log := filepath.Join(dir, fmt.Sprintf("redis-%d-%d.log", os.Getpid(), FreePort(t)))
		args := append([]string{"--port", itoa(r.Port), "--bind", "127.0.0.1", "--unixsocket", r.Socket, "--unixsocketperm", "700",
			"--dir", dir, "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
			"--logfile", log, "--requirepass", Canary}, extra...)
		r.p = start(t, exec.Command(bin, args...), filepath.Join(dir, fmt.Sprintf("stdout-%d.log", try)))
		r.p.log = log
		lastErr = r.p.waitReady(func() error { return r.Client().Ping(context.Background()).Err() })
		if lastErr == nil {
			t.Cleanup(func() { r.p.stop(syscall.SIGTERM) })
			return r
		}
		r.p.stop(syscall.SIGKILL)
	}
	t.Fatalf("redis: %v", lastErr)
	return nil
}

// Client is a go-redis client for db 0 over the socket.
func (r *Redis) Client() *goredis.Client {
	return goredis.NewClient(&goredis.Options{Network: "unix", Addr: r.Socket, Password: Canary, Protocol: 2, DisableIdentity: true})
}

// DSN is the URL Remora takes, over TCP with the password.
func (r *Redis) DSN() string { return fmt.Sprintf("redis://:%s@127.0.0.1:%d", Canary, r.Port) }
