package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/drivers/redis"
	"remora.dev/remora/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func memberDecisions(t *testing.T, a *Agent, drv drivers.Driver) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range []string{"any", "primary", "replica", "ordinal-0", "ordinal-1"} {
		skip, err := a.notThisMember(context.Background(), m, drv)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		out[m] = skip == ""
	}
	return out
}

func expect(t *testing.T, what string, got map[string]bool, backs ...string) {
	t.Helper()
	for m, b := range got {
		want := false
		for _, x := range backs {
			want = want || x == m
		}
		if b != want {
			t.Errorf("%s: member=%s backs up: %v, want %v", what, m, b, want)
		}
	}
}

// TestMemberRedis decides from ROLE on a real primary and replica.
func TestMemberRedis(t *testing.T) {
	primary := testenv.StartRedis(t)
	replica := testenv.StartRedis(t, "--masterauth", testenv.Canary)
	ctx := context.Background()
	rc := replica.Client()
	defer rc.Close()
	if err := rc.Do(ctx, "REPLICAOF", "127.0.0.1", primary.Port).Err(); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !strings.Contains(rc.Info(ctx, "replication").Val(), "master_link_status:up"); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the replica did not connect to the primary in 10s")
		}
	}
	a := newTestAgent(t, newFakeClock(time.Now()), "")
	a.cfg.Workload = "redis-1"
	p, _ := redis.New(drivers.Config{DSN: primary.DSN()})
	r, _ := redis.New(drivers.Config{DSN: replica.DSN()})
	expect(t, "primary", memberDecisions(t, a, p), "any", "primary", "ordinal-1")
	expect(t, "replica", memberDecisions(t, a, r), "any", "replica", "ordinal-1")
}

// TestMemberMariaDB: a read-only server counts as a replica.
func TestMemberMariaDB(t *testing.T) {
	m := testenv.StartMariaDB(t)
	a := newTestAgent(t, newFakeClock(time.Now()), "")
	d, _ := mysql.New(drivers.Config{DSN: m.DSN()})
	expect(t, "writable", memberDecisions(t, a, d), "any", "primary", "ordinal-0")
	m.SQL(t, "SET GLOBAL read_only = 1")
	expect(t, "read-only", memberDecisions(t, a, d), "any", "replica", "ordinal-0")
}

// TestMemberPostgres: a server not in recovery is the primary.
func TestMemberPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	a := newTestAgent(t, newFakeClock(time.Now()), "")
	d, _ := postgres.New(drivers.Config{DSN: pg.DSN("postgres")})
	expect(t, "primary", memberDecisions(t, a, d), "any", "primary", "ordinal-0")
}
