package pitr

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/file"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const segSize = 16 << 20

// archive is a WAL archive in a temporary directory, streamed into from a
// server by a streamer the test starts and stops.
type archive struct {
	t      *testing.T
	pg     *testenv.Postgres
	st     storage.Storage
	scope  repo.Scope
	cancel context.CancelFunc
	done   chan struct{}
	s      *postgres.WALStreamer
}

func newArchive(t *testing.T, pg *testenv.Postgres) *archive {
	st, err := storage.Open(context.Background(), "file://"+t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &archive{t: t, pg: pg, st: st, scope: repo.Scope{Namespace: "shop", Workload: "db-0", Driver: "postgres"}}
}

// start runs a streamer until stop.
func (a *archive) start() {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan struct{})
	sink := &Sink{Archive: &repo.LogArchive{Scope: a.scope, Storages: []storage.Storage{a.st}}}
	a.s = &postgres.WALStreamer{DSN: a.pg.DSN("postgres"), Slot: "remora", Flush: 200 * time.Millisecond, Sink: sink, Log: slog.New(slog.NewTextHandler(testWriter{a.t}, nil))}
	go func() {
		defer close(a.done)
		a.s.Run(ctx)
	}()
	a.t.Cleanup(a.stop)
	// WAL written before the slot exists is not the archive's to keep.
	testenv.WaitFor(a.t, "the streamer connected", time.Minute, func() bool { return a.s.Stats().Connected })
}

func (a *archive) stop() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
		a.cancel = nil
	}
}

// entries lists the archive.
func (a *archive) entries() []repo.LogEntry {
	e, err := repo.ListLogs(context.Background(), a.st, a.scope)
	if err != nil {
		a.t.Fatal(err)
	}
	return e
}

// has reports whether the archive holds the whole file name.
func (a *archive) has(name string) bool {
	for _, e := range a.entries() {
		if e.Name == name && !e.Partial {
			return true
		}
	}
	return false
}

// currentSegment is the name of the segment the server writes to next
// (pg_walfile_name of a position on a boundary names the segment before).
func currentSegment(t *testing.T, pg *testenv.Postgres) string {
	return strings.TrimSpace(pg.Psql(t, "postgres", "SELECT pg_walfile_name(pg_current_wal_insert_lsn() + 1)"))
}

// switchWAL ends the server's current segment and returns its name.
func switchWAL(t *testing.T, pg *testenv.Postgres) string {
	t.Helper()
	pg.Psql(t, "postgres", "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
	name := currentSegment(t, pg)
	pg.Psql(t, "postgres", "SELECT pg_switch_wal()")
	return name
}

// TestStreamArchivesSegmentsAsTheServerWroteThem: every completed segment
// is archived byte for byte as the server's pg_wal holds it, and the
// current one as a partial, which is its prefix.
func TestStreamArchivesSegmentsAsTheServerWroteThem(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE TABLE t (id int, v text)")
	a := newArchive(t, pg)
	a.start()
	var names []string
	for range 3 {
		names = append(names, switchWAL(t, pg))
	}
	for _, name := range names {
		testenv.WaitFor(t, "segment "+name+" archived", time.Minute, func() bool { return a.has(name) })
	}
	ctx := context.Background()
	for _, e := range a.entries() {
		if e.Partial || !strings.Contains(strings.Join(names, " "), e.Name) {
			continue
		}
		got, rec, err := repo.FetchLog(ctx, a.st, a.scope, e, repo.Trust{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(pg.Data, "pg_wal", e.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("archived %s differs from the server's (%d bytes, want %d)", e.Name, len(got), len(want))
		}
		if rec.System == "" || rec.Start == "" || rec.End == "" {
			t.Errorf("record of %s: %+v", e.Name, rec)
		}
	}

	// The current segment: a partial appears without a switch, and is the
	// start of the server's file.
	pg.Psql(t, "postgres", "INSERT INTO t SELECT g, 'partial' FROM generate_series(1, 100) g")
	cur := currentSegment(t, pg)
	var partial repo.LogEntry
	testenv.WaitFor(t, "a partial of "+cur, time.Minute, func() bool {
		for _, e := range a.entries() {
			if e.Name == cur && e.Partial {
				partial = e
				return true
			}
		}
		return false
	})
	got, _, err := repo.FetchLog(ctx, a.st, a.scope, partial, repo.Trust{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, _ := os.ReadFile(filepath.Join(pg.Data, "pg_wal", cur))
	if len(got) == 0 || !bytes.Equal(got, server[:len(got)]) {
		t.Errorf("the partial of %s (%d bytes) is not the start of the server's file", cur, len(got))
	}
}

// TestStreamResumesWithoutGap: the streamer stopped (as a killed sidecar
// is) and the server restarted or crashed mid-stream: every segment the
// server wrote meanwhile is archived, by the slot that kept it.
func TestStreamResumesWithoutGap(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE TABLE t (id int, v text)")
	a := newArchive(t, pg)
	a.start()
	first := switchWAL(t, pg)
	testenv.WaitFor(t, "the first segment archived", time.Minute, func() bool { return a.has(first) })

	a.stop()
	var written []string
	for range 3 { // while no sidecar runs
		written = append(written, switchWAL(t, pg))
	}
	pg.Psql(t, "postgres", "CHECKPOINT") // the server recycles what no slot holds
	a.start()
	written = append(written, switchWAL(t, pg))
	pg.Restart(t, false)
	written = append(written, switchWAL(t, pg))
	pg.Restart(t, true)
	written = append(written, switchWAL(t, pg))
	for _, name := range written {
		testenv.WaitFor(t, "segment "+name+" archived", 2*time.Minute, func() bool { return a.has(name) })
	}
	// Continuous from the first: no name is missing.
	var full []string
	for _, e := range a.entries() {
		if !e.Partial && !strings.HasSuffix(e.Name, ".history") {
			full = append(full, e.Name)
		}
	}
	checkContinuous(t, full)
	if g := a.s.Stats().Gaps; g != 0 {
		t.Errorf("%d gaps reported", g)
	}
}

func checkContinuous(t *testing.T, names []string) {
	t.Helper()
	var prev postgres.LSN
	for i, n := range names {
		_, start, ok := postgres.ParseSegmentName(n, segSize)
		if !ok {
			t.Fatalf("bad name %s", n)
		}
		if i > 0 && start != prev+segSize {
			t.Errorf("gap before %s (after %s)", n, names[i-1])
		}
		prev = start
	}
}

// testLogger writes the streamer's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestStreamReportsAGap: WAL the server removed while no slot kept it (the
// slot dropped while the sidecar was away) is a gap: reported, counted,
// and the streaming goes on from what the server has.
func TestStreamReportsAGap(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE TABLE t (id int, v text)")
	a := newArchive(t, pg)
	a.start()
	first := switchWAL(t, pg)
	testenv.WaitFor(t, "the first segment archived", time.Minute, func() bool { return a.has(first) })
	a.stop()
	pg.Psql(t, "postgres", "SELECT pg_drop_replication_slot('remora')")
	for range 8 {
		switchWAL(t, pg)
	}
	pg.Psql(t, "postgres", "CHECKPOINT")
	pg.Psql(t, "postgres", "CHECKPOINT")
	a.start()
	last := switchWAL(t, pg)
	testenv.WaitFor(t, "streaming after the gap", time.Minute, func() bool { return a.has(last) })
	if g := a.s.Stats().Gaps; g != 1 {
		t.Errorf("%d gaps reported, want 1", g)
	}
}
