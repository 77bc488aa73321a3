package fleet

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
	"remora.dev/remora/storage/file"
	_ "remora.dev/remora/storage/s3"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// gen is a driver that dumps random bytes: one database, or for a
// physical backup a base backup's object with what recovery needs.
type gen struct {
	physical map[string]string // the physical object's meta; nil: logical
}

func (g gen) Plan(context.Context) (*drivers.Plan, error) {
	p := &drivers.Plan{ServerVersion: "gen 1", Tools: map[string]string{"gen": "1"}}
	if g.physical != nil {
		p.Objects = []drivers.Object{{Name: "base.tar", Kind: drivers.KindPhysical, Format: "tar", Meta: g.physical}}
	} else {
		p.Objects = []drivers.Object{{Name: "databases/app", Kind: drivers.KindDatabase, Database: "app", Format: "bytes"}}
	}
	return p, nil
}

func (g gen) Dump(_ context.Context, _ drivers.Object, w io.Writer) error {
	_, err := io.CopyN(w, rand.Reader, 4096)
	return err
}

func (g gen) CheckRestore(context.Context, []drivers.Object, drivers.RestoreOptions) error {
	return nil
}

func (g gen) Restore(_ context.Context, _ drivers.Object, r io.Reader, _ drivers.RestoreOptions) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// fixture writes backups into a storage as agents would.
type fixture struct {
	t   *testing.T
	st  storage.Storage
	now time.Time
	key *repo.SigningKey
}

// backup takes one backup of ns/wl's driver, ago before now, signed with
// signer (nil: the fixture's key).
func (f *fixture) backup(scope repo.Scope, ago time.Duration, g gen, signer *repo.SigningKey) *repo.Entry {
	f.t.Helper()
	if signer == nil {
		signer = f.key
	}
	at := f.now.Add(-ago).Truncate(time.Second)
	res, err := repo.Backup(context.Background(), repo.BackupOptions{Scope: scope, Driver: g, Signer: signer,
		Now: func() time.Time { return at }, Destinations: []repo.Destination{{Storage: f.st}}})
	if err != nil {
		f.t.Fatal(err)
	}
	return f.entry(scope, res.Manifest.ID)
}

// entry lists the backup id of scope.
func (f *fixture) entry(scope repo.Scope, id string) *repo.Entry {
	f.t.Helper()
	es, err := repo.List(context.Background(), f.st, scope, repo.Trust{Keys: []*repo.VerifyKey{f.key.Verify}})
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range es {
		if es[i].Manifest.ID == id {
			return &es[i]
		}
	}
	f.t.Fatalf("backup %s of %+v not listed", id, scope)
	return nil
}

func newKey(t *testing.T) *repo.SigningKey {
	priv, _, _, err := repo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := repo.ParseSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const segSize = 16 << 20

// physicalMeta is what a base backup of system that started at 0/1000028
// records; stop is its stop time.
func physicalMeta(system string, stop time.Time) map[string]string {
	return map[string]string{postgres.MetaSystemIdentifier: system, postgres.MetaStartLSN: "0/1000028", postgres.MetaStopLSN: "0/1000100",
		postgres.MetaStopTimeline: "1", postgres.MetaWALSegmentSize: "16777216", postgres.MetaStopTime: stop.UTC().Format(time.RFC3339Nano)}
}

// archiveWAL stores the first segments of timeline 1, from the one the
// base backup starts in.
func (f *fixture) archiveWAL(scope repo.Scope, system string, segments int) {
	f.t.Helper()
	a := &repo.LogArchive{Scope: scope, Storages: []storage.Storage{f.st}, Signer: f.key}
	for i := 1; i <= segments; i++ {
		name := postgres.SegmentName(1, postgres.LSN(uint64(i)*segSize), segSize)
		if _, err := a.Store(context.Background(), repo.LogFile{System: system, Series: "00000001", Name: name, Data: []byte("wal " + name)}); err != nil {
			f.t.Fatal(err)
		}
	}
}

// populate writes a storage of two namespaces: shop/db-0 (postgres, a
// verified logical backup and a drilled physical one with its WAL),
// shop/cache-0 (redis, ten days old), billing/ledger-0 (mysql, its newest
// backup damaged, the one before failed its drill), billing/files-0
// (files, signed by a key nobody trusts).
func populate(t *testing.T, st storage.Storage, now time.Time) *fixture {
	f := &fixture{t: t, st: st, now: now, key: newKey(t)}
	ctx := context.Background()
	db := repo.Scope{Namespace: "shop", Workload: "db-0", Driver: "postgres"}
	f.backup(db, 26*time.Hour, gen{}, nil)
	e := f.backup(db, 2*time.Hour, gen{}, nil)
	if err := repo.Verify(ctx, st, e, repo.VerifyOptions{Record: true, Signer: f.key}); err != nil {
		t.Fatal(err)
	}
	phys := db
	phys.Method = drivers.MethodPhysical
	e = f.backup(phys, 3*time.Hour, gen{physical: physicalMeta("7300000000000000001", now.Add(-3*time.Hour))}, nil)
	if err := repo.WriteDrill(ctx, st, e, repo.Drill{Time: now, OK: true, Seconds: 2}, f.key); err != nil {
		t.Fatal(err)
	}
	f.archiveWAL(db, "7300000000000000001", 3)

	f.backup(repo.Scope{Namespace: "shop", Workload: "cache-0", Driver: "redis"}, 240*time.Hour, gen{}, nil)

	ledger := repo.Scope{Namespace: "billing", Workload: "ledger-0", Driver: "mysql"}
	f.backup(ledger, 30*time.Hour, gen{}, nil)
	e = f.backup(ledger, 5*time.Hour, gen{}, nil)
	if err := repo.WriteDrill(ctx, st, e, repo.Drill{Time: now, OK: false, Problems: []string{"restore failed"}}, f.key); err != nil {
		t.Fatal(err)
	}
	e = f.backup(ledger, time.Hour, gen{}, nil)
	if _, err := st.Put(ctx, e.Manifest.Dir()+repo.ManifestName, strings.NewReader("{not json")); err != nil {
		t.Fatal(err)
	}

	f.backup(repo.Scope{Namespace: "billing", Workload: "files-0", Driver: "files"}, time.Hour, gen{}, newKey(t))
	// Not a workload: stray keys at the root and below a namespace.
	for _, k := range []string{"README", "shop/notes.txt", "shop/db-0/postgres/not-an-id/manifest.json"} {
		if _, err := st.Put(ctx, k, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func storages(t *testing.T) map[string]storage.Storage {
	srv := testenv.StartS3(t)
	srv.SetEnv(t)
	srv.MakeBucket(t, "fleet")
	s3, err := storage.Open(context.Background(), srv.URL("fleet", "backups"), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]storage.Storage{"file": file.New(t.TempDir()), "s3": s3}
}

// TestSurvey: every namespace, workload, driver and method of a storage is
// found and summarised; a damaged backup and one signed by an untrusted
// key are shown, not counted; a failed drill makes the backup before it
// the last good one; the physical backups' point-in-time window is read
// from the WAL archive; MaxAge marks what is too old.
func TestSurvey(t *testing.T) {
	now := time.Now().UTC()
	for name, st := range storages(t) {
		t.Run(name, func(t *testing.T) {
			f := populate(t, st, now)
			r, err := Survey(context.Background(), st, Options{Trust: repo.Trust{Keys: []*repo.VerifyKey{f.key.Verify}}, Now: now, MaxAge: 26*time.Hour + 30*time.Minute, Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, row := range r.Rows {
				got = append(got, summary(row))
			}
			want := []string{
				"billing/files-0 files logical: 0 backups, last - good - proven -, 1 damaged (untrusted), stale no good backup",
				"billing/ledger-0 mysql logical: 2 backups, last 5h (drill failed) good 30h proven -, 1 damaged (damaged), stale last good backup",
				"shop/cache-0 redis logical: 1 backups, last 240h good 240h proven -, stale last good backup",
				"shop/db-0 postgres logical: 2 backups, last 2h (verify ok) good 2h proven 2h",
				"shop/db-0 postgres physical: 1 backups, last 3h (drill ok) good 3h proven 3h, pitr",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("survey:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			w := r.Rows[4].PITR
			// From the base backup's stop to the newest segment's storing.
			if w == nil || w.From == nil || w.From.Sub(now.Add(-3*time.Hour)).Abs() > time.Millisecond || w.To.Before(now.Add(-time.Minute)) || len(w.Gaps) != 0 {
				t.Errorf("point-in-time window %+v", w)
			}
			t.Logf("point in time: %s to %s", w.From, w.To)
			if len(r.Stale()) != 3 {
				t.Errorf("stale: %d rows", len(r.Stale()))
			}
		})
	}
}

// summary is a row in one line, ages in whole hours.
func summary(row Row) string {
	h := func(b *Backup) string {
		if b == nil {
			return "-"
		}
		return fmt.Sprintf("%dh", int(math.Round(b.AgeSeconds/3600)))
	}
	s := row.Namespace + "/" + row.Workload + " " + row.Driver + " " + row.Method + ": " + strconv.Itoa(row.Backups) + " backups, last " + h(row.Last)
	if b := row.Last; b != nil && b.Verified != StateNo {
		s += " (verify " + b.Verified + ")"
	}
	if b := row.Last; b != nil && b.Drilled != StateNo {
		s += " (drill " + b.Drilled + ")"
	}
	s += " good " + h(row.LastGood) + " proven " + h(row.LastProven)
	if len(row.Damaged) > 0 {
		s += ", " + strconv.Itoa(len(row.Damaged)) + " damaged (" + row.Damaged[0].State + ")"
	}
	if row.PITR != nil {
		s += ", pitr"
	}
	if row.Error != "" {
		s += ", error " + row.Error
	}
	if row.Stale != "" {
		s += ", stale " + strings.Join(strings.Fields(row.Stale)[:3], " ")
	}
	return s
}
