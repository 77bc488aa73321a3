package repo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"remora.dev/remora/repo/retention"
	"remora.dev/remora/storage"
	"remora.dev/remora/storage/file"
)

// backupAt takes one backup with the clock at t into st, with policy p.
func backupAt(t *testing.T, st storage.Storage, at time.Time, p *retention.Policy) *Result {
	t.Helper()
	src := &source{sizes: map[string]int{"small": 100}}
	res, err := Backup(context.Background(), BackupOptions{Scope: scope, Driver: src, Now: func() time.Time { return at },
		Destinations: []Destination{{Storage: st, Retention: p}}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func ids(t *testing.T, st storage.Storage) []string {
	t.Helper()
	es, err := List(context.Background(), st, scope, Trust{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Manifest.ID)
	}
	return out
}

// TestPruneKeepsTheNewBackup: backups written by a clock a few minutes fast
// are newer than the one a run has just taken; with last=2 the policy would
// delete the new one. A run never deletes the backup it has just written.
func TestPruneKeepsTheNewBackup(t *testing.T) {
	st := file.New(t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	for _, ahead := range []time.Duration{10, 20, 30} {
		backupAt(t, st, now.Add(ahead*time.Minute), nil)
	}
	res := backupAt(t, st, now, &retention.Policy{Last: 2})
	if got := ids(t, st); !strings.Contains(strings.Join(got, " "), res.Manifest.ID) {
		t.Fatalf("the run deleted the backup it had just taken (%s); left: %v", res.Manifest.ID, got)
	}
}

// TestPruneStopsOnFutureBackups: a backup more than the tolerance ahead of
// the clock stops pruning (nothing is deleted) and says why.
func TestPruneStopsOnFutureBackups(t *testing.T) {
	st := file.New(t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	backupAt(t, st, now.Add(-48*time.Hour), nil)
	backupAt(t, st, now.Add(72*time.Hour), nil) // a clock three days fast
	backupAt(t, st, now, nil)
	deleted, err := Prune(context.Background(), st, scope, &retention.Policy{Last: 1}, PruneOptions{Now: now})
	if !errors.Is(err, ErrFutureBackups) || len(deleted) != 0 {
		t.Fatalf("prune: deleted %v, err %v; want nothing deleted and ErrFutureBackups", deleted, err)
	}
	if got := ids(t, st); len(got) != 3 {
		t.Fatalf("left: %v, want all three", got)
	}
}

// TestPruneIgnoresMismatchedManifest: a manifest whose start time is not the
// time its ID says (an edited or forged one) is reported and neither counts
// for the policy nor is deleted.
func TestPruneIgnoresMismatchedManifest(t *testing.T) {
	st := file.New(t.TempDir())
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	old := backupAt(t, st, now.Add(-time.Hour), nil).Manifest
	forged := *old
	forged.Started = now.Add(30 * time.Minute) // claims to be the newest
	b, _ := json.Marshal(&forged)
	if _, err := st.Put(ctx, old.key(ManifestName), strings.NewReader(string(b))); err != nil {
		t.Fatal(err)
	}
	res := backupAt(t, st, now, nil)
	deleted, err := Prune(ctx, st, scope, &retention.Policy{Last: 1}, PruneOptions{Now: now})
	if err != nil || len(deleted) != 0 {
		t.Fatalf("prune: deleted %v, err %v", deleted, err)
	}
	if got := ids(t, st); len(got) != 2 || got[1] != res.Manifest.ID {
		t.Fatalf("left: %v", got)
	}
}

// TestSweepWithoutRetention: what a killed run left is swept after a backup
// whatever the retention, keep-everything included.
func TestSweepWithoutRetention(t *testing.T) {
	root := t.TempDir()
	st := file.New(root)
	ctx := context.Background()
	leftover := scope.Dir("test", "20200101T000000Z") + "databases/small.zst"
	st.Put(ctx, leftover, strings.NewReader("half a backup"))
	old := time.Now().Add(-48 * time.Hour) // by the storage's clock
	if err := os.Chtimes(filepath.Join(root, leftover), old, old); err != nil {
		t.Fatal(err)
	}
	backupAt(t, st, time.Now(), nil)
	if _, err := st.Stat(ctx, leftover); err == nil {
		t.Fatal("a killed run's leftover survived a backup with no retention")
	}
}

// TestManifestSizeLimit: a manifest above MaxManifestSize (planted by whoever
// can write to the bucket, to make every list hold it in memory) is reported
// as a damaged backup and not loaded.
func TestManifestSizeLimit(t *testing.T) {
	st := file.New(t.TempDir())
	ctx := context.Background()
	m := backupAt(t, st, time.Now(), nil).Manifest
	big := *m
	for len(big.Warnings) < 40000 {
		big.Warnings = append(big.Warnings, strings.Repeat("w", 40))
	}
	b, _ := json.Marshal(&big)
	if len(b) <= MaxManifestSize || len(b) > 16<<20 {
		t.Fatalf("test manifest of %d bytes", len(b))
	}
	st.Put(ctx, m.key(ManifestName), strings.NewReader(string(b)))
	es, err := List(ctx, st, scope, Trust{})
	if err != nil || len(es) != 1 || !strings.Contains(es[0].Problem, "larger than") {
		t.Fatalf("list: %+v, %v; want the backup reported as damaged", es, err)
	}
}

// TestRetentionFloor: a floor (the storage Secret's REMORA_RETENTION_MIN)
// keeps what it keeps whatever the policy: last=1 set by an annotation
// cannot wipe the week the floor protects.
func TestRetentionFloor(t *testing.T) {
	st := file.New(t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	for d := 9; d >= 0; d-- {
		backupAt(t, st, now.Add(-time.Duration(d)*24*time.Hour), nil)
	}
	floor := &retention.Policy{Days: 7}
	deleted, err := Prune(context.Background(), st, scope, &retention.Policy{Last: 1}, PruneOptions{Now: now, Floor: floor})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, st); len(got) != 7 || len(deleted) != 3 {
		t.Fatalf("left %d backups (%v), deleted %v; want the 7 of the floor's days", len(got), got, deleted)
	}
	// Without a policy (keep all), the floor deletes nothing.
	if deleted, _ := Prune(context.Background(), st, scope, nil, PruneOptions{Now: now.Add(30 * 24 * time.Hour), Floor: floor}); len(deleted) != 0 {
		t.Fatalf("a floor alone deleted %v", deleted)
	}
}

// TestSweepUsesTheStorageClock: an agent whose clock runs two days fast must
// not sweep the directory of a backup that another writer is taking right
// now: what counts is the storage's own clock against the storage's own
// timestamps.
func TestSweepUsesTheStorageClock(t *testing.T) {
	for name, st := range storages(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			real := time.Now().UTC()
			inProgress := scope.Dir(scope.Driver, real.Format(IDFormat)) + "databases/small.zst"
			put(t, st, inProgress, "half written, still being written")
			if _, err := Prune(ctx, st, scope, nil, PruneOptions{Now: real.Add(48 * time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Stat(ctx, inProgress); err != nil {
				t.Fatalf("a fast clock swept a running backup: %v", err)
			}
		})
	}
}

// gate is a storage whose reads of manifests wait until listWorkers of them
// are in flight (or all that are left), and which records the most in
// flight at once.
type gate struct {
	storage.Storage
	mu        sync.Mutex
	cond      *sync.Cond
	inflight  int
	remaining int
	most      int
}

func (g *gate) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if !strings.HasSuffix(key, ManifestName) {
		return g.Storage.Open(ctx, key)
	}
	g.mu.Lock()
	g.inflight++
	g.most = max(g.most, g.inflight)
	g.cond.Broadcast()
	for g.inflight < listWorkers && g.inflight < g.remaining {
		g.cond.Wait()
	}
	g.mu.Unlock()
	r, err := g.Storage.Open(ctx, key)
	g.mu.Lock()
	g.inflight--
	g.remaining--
	g.cond.Broadcast()
	g.mu.Unlock()
	return r, err
}

// TestListReadsWithABoundedPool: however many backups a storage holds, List
// reads at most listWorkers manifests at once (one goroutine per backup
// made 40 000 backups cost 138 MB).
func TestListReadsWithABoundedPool(t *testing.T) {
	st := file.New(t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	m := backupAt(t, st, now, nil).Manifest
	b, _ := json.Marshal(m)
	const n = 300
	for i := 1; i < n; i++ {
		c := *m
		c.Started = now.Add(-time.Duration(i) * time.Second)
		c.ID = c.Started.Format(IDFormat)
		b, _ = json.Marshal(&c)
		put(t, st, c.key(ManifestName), string(b))
	}
	g := &gate{Storage: st, remaining: n}
	g.cond = sync.NewCond(&g.mu)
	es, err := List(context.Background(), g, scope, Trust{})
	if err != nil || len(es) != n {
		t.Fatalf("list: %d entries, %v", len(es), err)
	}
	if g.most > listWorkers {
		t.Fatalf("%d manifests read at once, want at most %d", g.most, listWorkers)
	}
}

// TestPruneProven: under days=7,proven only drilled or verified backups
// fill the days; the unproven backups newer than the newest proven one are
// kept, older unproven ones (and a failed drill) go; a floor that is not
// proven still keeps its days of any backup.
func TestPruneProven(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	day := func(d int) string { return now.Add(-time.Duration(d) * 24 * time.Hour).Format(IDFormat) }
	for _, tc := range []struct {
		name  string
		floor *retention.Policy
		want  []int // days back that are kept
	}{
		{"policy alone", nil, []int{5, 3, 2, 1, 0}},
		{"with a floor of 7 days", &retention.Policy{Days: 7}, []int{6, 5, 4, 3, 2, 1, 0}},
		{"with a proven floor of last=3", &retention.Policy{Last: 3, Proven: true}, []int{8, 5, 3, 2, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := file.New(t.TempDir())
			for d := 9; d >= 0; d-- {
				backupAt(t, st, now.Add(-time.Duration(d)*24*time.Hour), nil)
			}
			entries, err := List(ctx, st, scope, Trust{})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				switch e.Manifest.ID {
				case day(8), day(5):
					err = writeVerification(ctx, st, e.Manifest, Verification{Time: now, OK: true, Backup: e.Manifest.Dir(), ManifestSHA256: e.ManifestSHA256}, nil)
				case day(3):
					err = WriteDrill(ctx, st, &e, Drill{Time: now, OK: true}, nil)
				case day(4):
					err = WriteDrill(ctx, st, &e, Drill{Time: now, OK: false, Problems: []string{"restore failed"}}, nil)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			p := &retention.Policy{Days: 7, Proven: true}
			if _, err := Prune(ctx, st, scope, p, PruneOptions{Now: now, Floor: tc.floor}); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, d := range slices.Backward(tc.want) {
				want = append(want, day(d))
			}
			slices.Sort(want)
			if got := ids(t, st); !slices.Equal(got, want) {
				t.Fatalf("kept %v, want %v", got, want)
			}
		})
	}
}
