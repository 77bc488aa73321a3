package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/internal/prio"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/spec"
)

// TestGentleAnnotationsFlowToTheRun: remora.dev/priority and
// remora.dev/max-rate reach the run, and a change to them holds from the
// next run: pg_dump runs at the annotated niceness, seen in /proc while it
// runs, and the dump passes through the max-rate bucket only when one is
// set.
func TestGentleAnnotationsFlowToTheRun(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g*7)::text) AS v FROM generate_series(1, 60000) g")
	file := filepath.Join(t.TempDir(), "annotations")
	a, err := New(Config{Namespace: "shop", Workload: "db-0", Driver: "postgres", DSN: pg.DSN("postgres"),
		Storage: []string{"file://" + t.TempDir()}, AnnotationsFile: file, Clock: newFakeClock(time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		annotations string
		nice        int
		throttled   bool
	}{
		{spec.AnnotationPriority + `="idle"` + "\n" + spec.AnnotationMaxRate + `="1Mi"`, 19, true},
		{spec.AnnotationPriority + `="normal"`, 0, false},
		{"", 10, false}, // the default: low
	} {
		t.Run(c.annotations, func(t *testing.T) {
			if err := os.WriteFile(file, []byte(c.annotations+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			a.reload()
			r, _ := a.trigger(context.Background(), triggerRequest)
			nice := dumpToolNice(t, r.done, "pg_dump")
			<-r.done
			if !r.result.OK {
				t.Fatalf("run failed: %s", r.result.Error)
			}
			if nice != c.nice {
				t.Errorf("pg_dump at nice %d, want %d", nice, c.nice)
			}
			if p := r.progress.Snapshot(); (p.ThrottledBytes > 0) != c.throttled {
				t.Errorf("%d bytes through the max-rate bucket; want some: %v", p.ThrottledBytes, c.throttled)
			}
		})
	}
}

// dumpToolNice waits for a child of this process named tool and returns
// its niceness; -1 if the run ended without one being seen.
func dumpToolNice(t *testing.T, done <-chan struct{}, tool string) int {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	for {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if err != nil || !strings.Contains(string(b), "("+tool+")") {
				continue
			}
			f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
			if len(f) < 2 || f[1] != self {
				continue
			}
			n, err := prio.NiceOfStat(string(b))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		select {
		case <-done:
			return -1
		case <-time.After(2 * time.Millisecond):
		}
	}
}
