package redis

// Restore drills: keys per database recorded at dump time and a throwaway
// redis-server to restore into.
//
// The RDB's own key counts (its RESIZEDB records) lie behind every value of
// the databases before them, so they are not read from the stream. The
// counts are read with INFO keyspace just before the snapshot is asked for
// and just after it arrived: the snapshot's count lies between the two
// readings when keys were only added or only removed meanwhile, and is
// exact when both agree (an idle server). Keys with a time to live may
// expire before the drill loads the snapshot (a loading server drops
// expired keys), so the lower bound allows for all of them.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"remora.dev/remora/drivers"
)

// checkKeys is the Meta key of a database's key count: check.keys.db0.
const checkKeys = drivers.CheckPrefix + "keys."

func init() {
	drivers.RegisterScratch(Name, startScratch)
}

// keyspace is INFO keyspace: keys and keys with a time to live, by
// database ("db0").
type keyspace map[string][2]int64

func (d *Driver) keyspace(ctx context.Context, c *goredis.Client) (keyspace, error) {
	s, err := c.Info(ctx, "keyspace").Result()
	if err != nil {
		return nil, d.explain(err)
	}
	out := keyspace{}
	for _, line := range strings.Split(s, "\n") {
		db, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(db, "db") {
			continue
		}
		var v [2]int64
		for _, kv := range strings.Split(rest, ",") {
			k, n, _ := strings.Cut(kv, "=")
			switch k {
			case "keys":
				v[0], _ = strconv.ParseInt(n, 10, 64)
			case "expires":
				v[1], _ = strconv.ParseInt(n, 10, 64)
			}
		}
		out[db] = v
	}
	return out, nil
}

// DumpMeta dumps the snapshot and returns the key counts around it.
func (d *Driver) DumpMeta(ctx context.Context, obj drivers.Object, w io.Writer) (map[string]string, error) {
	c := d.client()
	defer c.Close()
	before, err := d.keyspace(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := d.Dump(ctx, obj, w); err != nil {
		return nil, err
	}
	after, err := d.keyspace(ctx, c)
	if err != nil {
		return nil, err
	}
	meta := map[string]string{}
	for _, ks := range []keyspace{before, after} {
		for db := range ks {
			b, a := before[db], after[db]
			lo, hi := min(b[0], a[0])-max(b[1], a[1]), max(b[0], a[0])
			meta[checkKeys+db] = drivers.CheckRange(max(lo, 0), hi)
		}
	}
	return meta, nil
}

// Observe reads the restored server's keys per database.
func (d *Driver) Observe(ctx context.Context, obj drivers.Object, opts drivers.RestoreOptions) (map[string]string, error) {
	c := d.client()
	defer c.Close()
	ks, err := d.keyspace(ctx, c)
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for k := range obj.Meta {
		if db, ok := strings.CutPrefix(k, checkKeys); ok {
			got[k] = strconv.FormatInt(ks[db][0], 10) // an empty database is absent from INFO: 0 keys
		}
	}
	return got, nil
}

// startScratch starts a throwaway redis-server on a unix socket in o.Dir,
// with no TCP port and no persistence; the restore loads the snapshot into
// it by replication, as it would into the real server.
func startScratch(ctx context.Context, o drivers.ScratchOptions) (*drivers.Scratch, error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis: a drill needs redis-server: %w", drivers.ErrNoServer)
	}
	sock := filepath.Join(o.Dir, "redis.sock")
	conf := filepath.Join(o.Dir, "redis.conf")
	lines := []string{"port 0", "unixsocket " + confQuote(sock), "unixsocketperm 700", "dir " + confQuote(o.Dir),
		`save ""`, "appendonly no", "logfile " + confQuote(filepath.Join(o.Dir, "redis.log")), "databases 256"}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	srv, err := drivers.StartServer(ctx, server, []string{conf}, drivers.ToolEnv(nil), nil, "")
	if err != nil {
		return nil, fmt.Errorf("redis: start the drill's server: %w", err)
	}
	stop := func() { srv.Stop(syscall.SIGTERM, 30*time.Second) }
	dsn := "unix://" + sock
	d, err := New(drivers.Config{DSN: dsn})
	if err == nil {
		c := d.client()
		err = srv.WaitReady(ctx, time.Minute, func() error { return c.Ping(ctx).Err() })
		c.Close()
	}
	if err != nil {
		stop()
		log, _ := os.ReadFile(filepath.Join(o.Dir, "redis.log"))
		return nil, fmt.Errorf("redis: the drill's server did not start: %w: %s", err, lastLines(string(log), 3))
	}
	return &drivers.Scratch{DSN: dsn, Stop: stop}, nil
}
