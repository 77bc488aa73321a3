package main

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/agent/backup"
	"remora.dev/remora/agent/retention"
	"remora.dev/remora/agent/storage"
	"remora.dev/remora/internal/testenv"
)

// killPoints is REMORA_KILL_POINTS (make soak raises it), else 30.
func killPoints(t *testing.T) int {
	if s := os.Getenv("REMORA_KILL_POINTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("REMORA_KILL_POINTS=%q", s)
		}
		return n
	}
	return 30
}

// TestKillAnywhere kills `remora backup` with SIGKILL at random moments of
// its run (dumping, uploading parts, writing the manifest, verifying) against
// both storages: after every kill, each listed backup verifies and the earlier
// ones are intact; the next backup succeeds and restores; and retention's
// sweep removes everything the killed runs left, and nothing else.
func TestKillAnywhere(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	seedRandom(t, pg, "rnd", 12)
	want := checksums(t, pg, "rnd")
	fileDir := t.TempDir()
	seed := faultSeed(t)
	points := killPoints(t)

	for _, tc := range []struct{ name, url string }{
		{"s3", s3.URL("backups", "kill") + "&part-size=5MiB"},
		{"file", "file://" + fileDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(s3.Env(), "REMORA_STORAGE="+tc.url, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd")
			nextSecond := func() {
				time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
			}
			nextSecond()
			start := time.Now()
			mustRemora(t, env, "backup")
			full := time.Since(start)
			verified := map[string]bool{listJSON(t, env)[0].ID: true}

			ctx := context.Background()
			s3.SetEnv(t)
			st, err := storage.Open(ctx, tc.url)
			if err != nil {
				t.Fatal(err)
			}
			dirOf := func(key string) string {
				parts := strings.SplitN(key, "/", 5)
				if len(parts) < 5 {
					return key
				}
				return strings.Join(parts[:4], "/") + "/"
			}
			// partial counts what a killed run left that is not a listed backup.
			partial := func() int {
				n := 0
				st.List(ctx, "", func(o storage.Object) error {
					if !verified[strings.TrimSuffix(strings.TrimPrefix(dirOf(o.Key), "shop/db-0/postgres/"), "/")] {
						n++
					}
					return nil
				})
				if tc.name == "s3" {
					core := &minio.Core{Client: s3.Client(t)}
					for u := range core.ListIncompleteUploads(ctx, "backups", "kill/", true) {
						if u.Err == nil {
							n++
						}
					}
				} else {
					for _, f := range filesUnder(fileDir) {
						if strings.Contains(f, ".remora-tmp-") {
							n++
						}
					}
				}
				return n
			}

			rng := rand.New(rand.NewPCG(seed, 0x6b111))
			outcome := map[string]int{}
			for i := range points {
				nextSecond()
				leftBefore := partial()
				cmd := exec.Command(remoraBin, "backup")
				cmd.Env = append(os.Environ(), env...)
				cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				delay := time.Duration(rng.Float64() * 1.1 * float64(full))
				time.Sleep(delay)
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				killed := false
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					killed = true
				}
				left := partial() - leftBefore
				listed := listJSON(t, env)
				var ids []string
				for _, b := range listed {
					ids = append(ids, b.ID)
				}
				for id := range verified {
					if !slices.Contains(ids, id) {
						t.Fatalf("kill %d at %s: backup %s that was good is gone (listed: %v)", i, delay, id, ids)
					}
				}
				grew := 0
				for _, id := range ids {
					if !verified[id] {
						if r := remora(t, env, "verify", id); r.code != 0 {
							t.Fatalf("kill %d at %s: listed backup %s does not verify: %s", i, delay, id, r)
						}
						verified[id] = true
						grew++
					}
				}
				switch {
				case !killed:
					outcome["finished before the kill"]++
				case grew > 0:
					outcome["killed after the manifest (listed, verifies)"]++
				case left > 0:
					outcome["killed while uploading (parts or objects stored, not listed)"]++
				default:
					outcome["killed before anything was stored"]++
				}
			}
			t.Logf("%d kills between 0 and %s (a backup takes %s): %v", points, time.Duration(1.1*float64(full)).Round(time.Millisecond), full.Round(time.Millisecond), outcome)

			nextSecond()
			mustRemora(t, env, "backup")
			mustRemora(t, env, "restore", "--latest", "--into", "rnd_copy")
			if got := checksums(t, pg, "rnd_copy"); !reflect.DeepEqual(got, want) {
				t.Fatalf("restored after the kills: %v, want %v", got, want)
			}
			pg.Psql(t, "postgres", "DROP DATABASE rnd_copy")

			// A day later, retention's sweep removes what the killed runs
			// left and keeps every listed backup.
			scope := backup.Scope{Namespace: "shop", Workload: "db-0", Driver: "postgres"}
			before := listJSON(t, env)
			keepAll, _ := retention.Parse("last=10000")
			if _, err := backup.Prune(ctx, st, scope, keepAll, time.Now().Add(backup.LeftoverAge+time.Hour), nil); err != nil {
				t.Fatal(err)
			}
			if after := listJSON(t, env); !reflect.DeepEqual(after, before) {
				t.Fatalf("the sweep changed the listed backups: %d before, %d after", len(before), len(after))
			}
			listedDirs := map[string]bool{}
			for _, b := range before {
				listedDirs["shop/db-0/postgres/"+b.ID+"/"] = true
			}
			st.List(ctx, "", func(o storage.Object) error {
				if !listedDirs[dirOf(o.Key)] {
					t.Errorf("left after the sweep: %s", o.Key)
				}
				if strings.HasSuffix(o.Key, ".json") { // manifests and verification records
					if rc, err := st.Open(ctx, o.Key); err == nil {
						b, _ := io.ReadAll(rc)
						rc.Close()
						noCanary(t, o.Key, string(b))
					}
				}
				return nil
			})
			if tc.name == "s3" {
				core := &minio.Core{Client: s3.Client(t)}
				for u := range core.ListIncompleteUploads(ctx, "backups", "kill/", true) {
					if u.Err == nil {
						t.Errorf("unfinished upload left after the sweep: %s", u.Key)
					}
				}
			} else {
				for _, f := range filesUnder(fileDir) {
					if rel := strings.TrimPrefix(f, fileDir+"/"); !listedDirs[dirOf(rel)] {
						t.Errorf("file left after the sweep: %s", rel)
					}
				}
			}
		})
	}
}
