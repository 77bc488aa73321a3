package faults

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
	"remora.dev/remora/repo"
	"remora.dev/remora/repo/retention"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/file" // the backends storage.Open finds
	_ "remora.dev/remora/storage/s3"
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

// How a killed run ended, from what it left.
const (
	finished      = "finished before the kill"
	afterManifest = "killed after the manifest (listed, verifies)"
	midUpload     = "killed while uploading (parts or objects stored, not listed)"
	beforeStored  = "killed before anything was stored"
)

// TestKillAnywhere kills `remora backup` with SIGKILL at moments of its run
// (dumping, uploading parts, writing the manifest, verifying) against both
// storages: after every kill, each listed backup verifies and the earlier
// ones are intact; the next backup succeeds and restores; and retention's
// sweep removes everything the killed runs left, and nothing else.
//
// Three kills are placed by what the run is doing: blocked on its first log
// line (it has checked the storage and claimed its ID, and stored no data),
// while the big object is being uploaded, and blocked on printing its report
// (the manifest is written). The others come at random moments (seeded by
// REMORA_FAULT_SEED) between the start and a little past a whole run. The
// sweep must have hit each of the three phases.
//
// It gives its in-process storage the S3 keys through the environment, so
// it is not a parallel test itself; its two storages run in parallel.
func TestKillAnywhere(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	testenv.SeedRandom(t, pg, "rnd", 12)
	want := testenv.Checksums(t, pg, "rnd")
	fileDir := t.TempDir()
	seed := testenv.FaultSeed(t)
	points := killPoints(t)
	s3.SetEnv(t) // for storage.Open and repo.Prune here; the subtests run in parallel

	for _, tc := range []struct{ name, url string }{
		{"s3", s3.URL("backups", "kill") + "&part-size=5MiB"},
		{"file", "file://" + fileDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := append(s3.Env(), "REMORA_STORAGE="+tc.url, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd")
			start := time.Now()
			remora.Must(t, env, "backup")
			full := time.Since(start)
			verified := map[string]bool{clitest.List(t, remora, env)[0].ID: true}

			ctx := context.Background()
			st, err := storage.Open(ctx, tc.url, storage.Options{})
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
					if strings.Contains(o.Key, "/.claim-") {
						return nil // a run's claim on its ID: no data (the sweep's check below sees it)
					}
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
					for _, f := range testenv.FilesUnder(fileDir) {
						if strings.Contains(f, ".remora-tmp-") {
							n++
						}
					}
				}
				return n
			}
			// pastIDs waits until the clock is past the second of every
			// backup ID the storage holds, listed or left by a killed run:
			// a run started before then spends up to a second waiting for a
			// free ID, where a random kill would find nothing to interrupt.
			pastIDs := func() {
				var newest time.Time
				st.List(ctx, "", func(o storage.Object) error {
					id := strings.TrimSuffix(strings.TrimPrefix(dirOf(o.Key), "shop/db-0/postgres/"), "/")
					if when, err := time.Parse(repo.IDFormat, id); err == nil && when.After(newest) {
						newest = when
					}
					return nil
				})
				time.Sleep(time.Until(newest.Add(time.Second + 20*time.Millisecond)))
			}
			// uploading reports whether an upload of the big object is under way.
			uploading := func() bool {
				if tc.name == "file" {
					return testenv.Writing(fileDir, "rnd.dump.zst.remora-tmp-", 1<<20)
				}
				core := &minio.Core{Client: s3.Client(t)}
				for u := range core.ListIncompleteUploads(ctx, "backups", "kill/", true) {
					if u.Err != nil || !strings.HasSuffix(u.Key, "/rnd.dump.zst") {
						continue
					}
					parts, err := core.ListObjectParts(ctx, "backups", u.Key, u.UploadID, 0, 10)
					if err == nil && len(parts.ObjectParts) > 0 {
						return true // at least one part is stored
					}
				}
				return false
			}

			outcome := map[string]int{}
			// kill runs `remora backup`, lets setup change its output, and
			// kills it with SIGKILL once at returns (saying when that was).
			// It checks what the kill left and returns how the run ended.
			kill := func(i int, setup func(*exec.Cmd), at func(*exec.Cmd) string) string {
				t.Helper()
				pastIDs()
				leftBefore := partial()
				cmd := remora.Command(env, "backup")
				cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
				if setup != nil {
					setup(cmd)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { // when at fails the test
					if cmd.ProcessState == nil {
						cmd.Process.Kill()
						cmd.Wait()
					}
				}()
				when := at(cmd)
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
				killed := false
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					killed = true
				}
				left := partial() - leftBefore
				listed := clitest.List(t, remora, env)
				var ids []string
				for _, b := range listed {
					ids = append(ids, b.ID)
				}
				for id := range verified {
					if !slices.Contains(ids, id) {
						t.Fatalf("kill %d at %s: backup %s that was good is gone (listed: %v)", i, when, id, ids)
					}
				}
				grew := 0
				for _, id := range ids {
					if !verified[id] {
						if r := remora.Run(t, env, "verify", id); r.Code != 0 {
							t.Fatalf("kill %d at %s: listed backup %s does not verify: %s", i, when, id, r)
						}
						verified[id] = true
						grew++
					}
				}
				var how string
				switch {
				case !killed:
					how = finished
				case grew > 0:
					how = afterManifest
				case left > 0:
					how = midUpload
				default:
					how = beforeStored
				}
				outcome[how]++
				return how
			}

			// The three placed kills.
			for i, p := range []struct {
				want  string
				setup func(*exec.Cmd)
				at    func(*exec.Cmd) string
			}{
				{beforeStored, func(cmd *exec.Cmd) { cmd.Stderr = fullPipe(t) }, func(cmd *exec.Cmd) string {
					waitBlockedWriting(t, cmd, 2)
					return "its first log line"
				}},
				{midUpload, nil, func(cmd *exec.Cmd) string {
					testenv.WaitFor(t, "an upload of the big object under way", 2*time.Minute, uploading)
					return "the upload of the big object"
				}},
				{afterManifest, func(cmd *exec.Cmd) { cmd.Stdout = fullPipe(t) }, func(cmd *exec.Cmd) string {
					waitBlockedWriting(t, cmd, 1)
					return "its report"
				}},
			} {
				if got := kill(i, p.setup, p.at); got != p.want {
					t.Errorf("placed kill %d: %s, want %s", i, got, p.want)
				}
			}

			// The random ones.
			rng := rand.New(rand.NewPCG(seed, 0x6b111))
			for i := range points {
				delay := time.Duration(rng.Float64() * 1.1 * float64(full))
				kill(3+i, nil, func(*exec.Cmd) string {
					time.Sleep(delay)
					return delay.String()
				})
			}
			t.Logf("seed %d: 3 placed kills and %d between 0 and %s (a backup takes %s): %v", seed, points, time.Duration(1.1*float64(full)).Round(time.Millisecond), full.Round(time.Millisecond), outcome)
			for _, phase := range []string{beforeStored, midUpload, afterManifest} {
				if outcome[phase] == 0 {
					t.Errorf("no kill landed %s: %v", phase, outcome)
				}
			}

			remora.Must(t, env, "backup")
			remora.Must(t, env, "restore", "--latest", "--into", "rnd_"+tc.name)
			if got := testenv.Checksums(t, pg, "rnd_"+tc.name); !reflect.DeepEqual(got, want) {
				t.Fatalf("restored after the kills: %v, want %v", got, want)
			}
			pg.Psql(t, "postgres", "DROP DATABASE rnd_"+tc.name)

			// A day later, retention's sweep removes what the killed runs
			// left and keeps every listed backup.
			scope := repo.Scope{Namespace: "shop", Workload: "db-0", Driver: "postgres"}
			before := clitest.List(t, remora, env)
			keepAll, _ := retention.Parse("last=10000")
			if _, err := repo.Prune(ctx, st, scope, &keepAll, repo.PruneOptions{Now: time.Now().Add(repo.LeftoverAge + time.Hour), StorageNow: time.Now().Add(repo.LeftoverAge + time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if after := clitest.List(t, remora, env); !reflect.DeepEqual(after, before) {
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
						testenv.NoCanary(t, o.Key, string(b))
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
				for _, f := range testenv.FilesUnder(fileDir) {
					if rel := strings.TrimPrefix(f, fileDir+"/"); !listedDirs[dirOf(rel)] {
						t.Errorf("file left after the sweep: %s", rel)
					}
				}
			}
		})
	}
}

// fullPipe returns the write end of a pipe whose buffer is full, for a
// process's stdout or stderr: its first write there blocks, and stays
// blocked, since nothing reads the pipe. Both ends are closed when the test
// ends.
func fullPipe(t *testing.T) *os.File {
	t.Helper()
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(fds[0]), "full pipe (read end)"), fds[1]
	buf := make([]byte, 4096)
	for {
		if _, err := syscall.Write(w, buf); err == syscall.EAGAIN {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.SetNonblock(w, false); err != nil { // the writer must block, not fail
		t.Fatal(err)
	}
	wf := os.NewFile(uintptr(w), "full pipe")
	t.Cleanup(func() {
		r.Close()
		wf.Close()
	})
	return wf
}

// waitBlockedWriting waits until a thread of cmd's process is in write(2) on
// fd, which is a full pipe: it is blocked there.
func waitBlockedWriting(t *testing.T, cmd *exec.Cmd, fd int) {
	t.Helper()
	pid := cmd.Process.Pid
	want := fmt.Sprintf("%d %#x ", syscall.SYS_WRITE, fd)
	testenv.WaitFor(t, fmt.Sprintf("remora blocked writing to fd %d", fd), 2*time.Minute, func() bool {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			t.Fatalf("remora exited before it wrote to fd %d", fd)
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
		for _, task := range tasks {
			if b, err := os.ReadFile(task); err == nil && strings.HasPrefix(string(b), want) {
				return true
			}
		}
		return false
	})
}
