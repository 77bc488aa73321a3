package faults

import (
	"bytes"
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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
	"remora.dev/remora/repo"
	"remora.dev/remora/repo/retention"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/azblob" // the backends storage.Open finds
	_ "remora.dev/remora/storage/file"
	_ "remora.dev/remora/storage/ftp"
	_ "remora.dev/remora/storage/gcs"
	_ "remora.dev/remora/storage/s3"
	_ "remora.dev/remora/storage/sftp"
	_ "remora.dev/remora/storage/smb"
	_ "remora.dev/remora/storage/webdav"
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

// tmpMarker is in the name of every temporary file the file, sftp, webdav,
// ftp and smb backends write before renaming it to its key (see their Put).
const tmpMarker = ".remora-tmp-"

// bigTmp is in the temporary name of the big object, the database's dump.
const bigTmp = "rnd.dump.zst" + tmpMarker

// backend is a storage the kills run against, and what the test needs to
// know of its server beside the storage interface.
type backend struct {
	name string
	url  string
	env  []string // the credentials remora needs
	// random is how many kills come at random moments.
	random int
	// unlisted names what the server keeps of unfinished writes that List
	// does not show: temporary files, unfinished multipart uploads,
	// uncommitted blocks. A killed run may leave these; the sweep must
	// remove them all.
	unlisted func() []string
	// files is every file the server keeps below the storage's root on its
	// disk, relative to it (nil where the layout on disk is the server's
	// own): after the sweep, each must belong to a listed backup.
	files func() []string
	// uploading reports whether remora, process pid, is uploading the big
	// object. A kill then always ends as midUpload: globals.sql, stored
	// before the dump starts, is left without a manifest.
	uploading func(pid int) bool
}

// tempFiles names the files below dir whose names hold tmpMarker.
func tempFiles(dir string) []string {
	var out []string
	for _, f := range relFiles(dir) {
		if strings.Contains(filepath.Base(f), tmpMarker) {
			out = append(out, f)
		}
	}
	return out
}

// relFiles is every file below dir, relative to it.
func relFiles(dir string) []string {
	var out []string
	for _, f := range testenv.FilesUnder(dir) {
		out = append(out, strings.TrimPrefix(f, dir+"/"))
	}
	return out
}

// diskBackend is a backend whose server keeps the storage's files in dir on
// this machine's disk, each under its key, while Put writes a temporary
// name beside it: the temporary file of the big object, growing on the
// server's disk, shows that it is being uploaded, and a kill leaves it.
func diskBackend(t *testing.T, name, url string, env []string, dir string) backend {
	return backend{name: name, url: url, env: env, random: fewKills(t),
		unlisted:  func() []string { return tempFiles(dir) },
		files:     func() []string { return relFiles(dir) },
		uploading: func(int) bool { return testenv.Writing(dir, bigTmp, 1<<20) },
	}
}

// wrote reports whether process pid has written more than n bytes: write(2)
// and its kin on files, pipes and sockets, as /proc/PID/io's wchar counts
// them. A backup writes little besides the dump (logs, a manifest of a few
// KiB), so a few MiB written mean the big object is going out. It is the
// sign used where nothing of an unfinished upload shows on the server (see
// backends); elsewhere the server's own state is better, since it shows
// which object is going out, and bytes written to a socket may still sit in
// a buffer when the kill comes.
func wrote(pid int, n int64) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			w, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return err == nil && w > n
		}
	}
	return false
}

// fewKills is the number of random kills for the backends other than s3
// and file, which take REMORA_KILL_POINTS: 4 of the default 30, scaled up
// with it for make soak; with the placed kills, enough within make test's
// time.
func fewKills(t *testing.T) int { return max(1, killPoints(t)*4/30) }

// backends are the storages the kills run against: each starts its server
// and sets its credentials in this process (for storage.Open and
// repo.Prune) for the test's duration.
var backends = []struct {
	name  string
	start func(t *testing.T) backend
}{
	{"s3", s3Backend},
	{"file", func(t *testing.T) backend {
		dir := t.TempDir()
		b := diskBackend(t, "file", "file://"+dir, nil, dir)
		b.random = killPoints(t)
		return b
	}},
	{"sftp", func(t *testing.T) backend {
		srv := testenv.StartSFTP(t)
		srv.SetEnv(t)
		dir := filepath.Join(srv.Home, "kill")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("chown", srv.User+":", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
		return diskBackend(t, "sftp", srv.URL(dir), srv.Env(), dir)
	}},
	{"webdav", func(t *testing.T) backend {
		srv := testenv.StartWebDAV(t)
		srv.SetEnv(t)
		b := diskBackend(t, "webdav", srv.URL(srv.MakeCollection(t, "kill")), srv.Env(), filepath.Join(srv.Dir, "kill"))
		// Apache's mod_dav_fs writes the body of a PUT to a temporary
		// file of its own (.davfs.tmp…), renamed to Remora's temporary
		// name only when the body is complete, and removed when the
		// client goes away: nothing of the big object shows while it
		// goes up, and a kill leaves nothing of it but in the moment
		// between the PUT and the MOVE.
		b.uploading = func(pid int) bool { return wrote(pid, 4<<20) }
		return b
	}},
	{"ftp", func(t *testing.T) backend {
		srv := testenv.StartPlainFTP(t)
		srv.SetEnv(t)
		return diskBackend(t, "ftp", srv.URL(srv.MakeDir(t, "kill")), srv.Env(), filepath.Join(srv.Home, "kill"))
	}},
	{"smb", func(t *testing.T) backend {
		srv := testenv.StartSMB(t)
		srv.SetEnv(t)
		dir := filepath.Join(srv.Dir, "kill")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return diskBackend(t, "smb", srv.URL(srv.Share, "kill"), srv.Env(), dir)
	}},
	{"azblob", azblobBackend},
	{"gs", func(t *testing.T) backend {
		srv := testenv.StartGCS(t)
		srv.MakeBucket(t, "backups")
		return backend{name: "gs", url: srv.URL("backups", "kill"), random: fewKills(t),
			// fake-gcs-server keeps an unfinished resumable upload in
			// its memory only (a map of upload IDs), never on disk nor
			// in a listing, as GCS itself keeps it out of sight until
			// it expires: there is nothing of it to count, and nothing
			// of the big object shows while it goes up.
			unlisted:  func() []string { return nil },
			uploading: func(pid int) bool { return wrote(pid, 4<<20) },
		}
	}},
}

func s3Backend(t *testing.T) backend {
	srv := testenv.StartS3(t)
	srv.MakeBucket(t, "backups")
	srv.SetEnv(t)
	core := &minio.Core{Client: srv.Client(t)}
	// uploads lists the multipart uploads not completed or aborted.
	uploads := func() []minio.ObjectMultipartInfo {
		var out []minio.ObjectMultipartInfo
		for u := range core.ListIncompleteUploads(context.Background(), "backups", "kill/", true) {
			if u.Err == nil {
				out = append(out, u)
			}
		}
		return out
	}
	return backend{name: "s3", url: srv.URL("backups", "kill") + "&part-size=5MiB", env: srv.Env(), random: killPoints(t),
		unlisted: func() []string {
			var out []string
			for _, u := range uploads() {
				out = append(out, "unfinished upload of "+u.Key)
			}
			return out
		},
		// A part of the big object stored: the kill leaves an unfinished upload.
		uploading: func(int) bool {
			for _, u := range uploads() {
				if !strings.HasSuffix(u.Key, "/rnd.dump.zst") {
					continue
				}
				parts, err := core.ListObjectParts(context.Background(), "backups", u.Key, u.UploadID, 0, 10)
				if err == nil && len(parts.ObjectParts) > 0 {
					return true
				}
			}
			return false
		},
	}
}

func azblobBackend(t *testing.T) backend {
	srv := testenv.StartAzurite(t)
	srv.CreateContainer(t, "backups")
	srv.SetEnv(t)
	c := srv.Client(t).ServiceClient().NewContainerClient("backups")
	// Blocks of 1 MiB: the big object's first staged block comes well
	// before its commit.
	return backend{name: "azblob", url: srv.URL("backups", "kill") + "&block-size=1MiB", env: srv.Env(), random: fewKills(t),
		unlisted: func() []string { return uncommitted(t, c) },
		// A block of the big object staged: the kill leaves it.
		uploading: func(int) bool {
			return slices.ContainsFunc(uncommitted(t, c), func(b string) bool { return strings.HasSuffix(b, "/rnd.dump.zst") })
		},
	}
}

// uncommitted names the blobs of the container that have staged blocks and
// no committed content: what an interrupted Put leaves.
func uncommitted(t *testing.T, c *container.Client) []string {
	list := func(withUncommitted bool) map[string]bool {
		names := map[string]bool{}
		p := c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Include: container.ListBlobsInclude{UncommittedBlobs: withUncommitted}})
		for p.More() {
			page, err := p.NextPage(context.Background())
			if err != nil {
				t.Errorf("list blobs: %v", err)
				return names
			}
			for _, b := range page.Segment.BlobItems {
				names[*b.Name] = true
			}
		}
		return names
	}
	committed := list(false)
	var out []string
	for name := range list(true) {
		if !committed[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// TestKillAnywhere kills `remora backup` with SIGKILL at moments of its run
// (dumping, uploading, writing the manifest, verifying) against every
// storage backend, each on its real server: after every kill, each listed
// backup verifies and the earlier ones are intact; the next backup succeeds
// and restores; and retention's sweep removes everything the killed runs
// left, on the server too (temporary files, unfinished uploads, uncommitted
// blocks), and nothing else.
//
// Three kills are placed by what the run is doing: blocked on its first log
// line (it has checked the storage and claimed its ID, and stored no data),
// while the big object is being uploaded, and blocked on printing its report
// (the manifest is written). The others come at random moments (seeded by
// REMORA_FAULT_SEED) between the start and a little past a whole run. The
// kills must have hit each of the three phases.
//
// It gives its in-process storages their credentials through the
// environment (each backend its own variables), so it is not a parallel
// test itself, nor are its subtests; its backends run at once, each in its own goroutine rather than as parallel subtests, which
// -parallel (the number of CPUs) would queue: the kills spend most of their
// time waiting, for a moment to kill or for the next second's ID.
func TestKillAnywhere(t *testing.T) {
	pg := testenv.StartPostgres(t)
	testenv.SeedRandom(t, pg, "rnd", 12)
	want := testenv.Checksums(t, pg, "rnd")
	seed := testenv.FaultSeed(t)
	var wg sync.WaitGroup
	for _, b := range backends {
		wg.Go(func() {
			t.Run(b.name, func(t *testing.T) {
				k := newKiller(t, b.start(t), pg)
				k.placed()
				k.randomly(seed)
				k.restore(want)
				k.sweep()
			})
		})
	}
	wg.Wait()
}

// killer runs and kills backups against one backend.
type killer struct {
	t        *testing.T
	b        backend
	pg       *testenv.Postgres
	env      []string
	st       storage.Storage
	ctx      context.Context
	full     time.Duration   // how long a whole backup takes
	verified map[string]bool // the IDs of the listed backups, each verified
	outcome  map[string]int
}

const scopePrefix = "shop/db-0/postgres/"

func newKiller(t *testing.T, b backend, pg *testenv.Postgres) *killer {
	k := &killer{t: t, b: b, pg: pg, ctx: context.Background(), outcome: map[string]int{}}
	k.env = append(slices.Clone(b.env), "REMORA_STORAGE="+b.url, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd")
	start := time.Now()
	remora.Must(t, k.env, "backup")
	k.full = time.Since(start)
	k.verified = map[string]bool{clitest.List(t, remora, k.env)[0].ID: true}
	st, err := storage.Open(k.ctx, b.url, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k.st = st
	return k
}

// dirOf is the backup directory of a key (shop/db-0/postgres/ID/), or the
// key itself when it is in none.
func dirOf(key string) string {
	parts := strings.SplitN(key, "/", 5)
	if len(parts) < 5 {
		return key
	}
	return strings.Join(parts[:4], "/") + "/"
}

// leftovers counts what killed runs left that is not a listed backup: the
// objects List shows outside the verified backups, and what the server
// keeps that List does not show.
func (k *killer) leftovers() int {
	n := 0
	k.st.List(k.ctx, "", func(o storage.Object) error {
		if strings.Contains(o.Key, "/.claim-") {
			return nil // a run's claim on its ID: no data (the sweep's check below sees it)
		}
		if !k.verified[strings.TrimSuffix(strings.TrimPrefix(dirOf(o.Key), scopePrefix), "/")] {
			n++
		}
		return nil
	})
	return n + len(k.b.unlisted())
}

// pastIDs waits until the clock is past the second of every backup ID the
// storage holds, listed or left by a killed run: a run started before then
// spends up to a second waiting for a free ID, where a random kill would
// find nothing to interrupt.
func (k *killer) pastIDs() {
	var newest time.Time
	k.st.List(k.ctx, "", func(o storage.Object) error {
		id := strings.TrimSuffix(strings.TrimPrefix(dirOf(o.Key), scopePrefix), "/")
		if when, err := time.Parse(repo.IDFormat, id); err == nil && when.After(newest) {
			newest = when
		}
		return nil
	})
	time.Sleep(time.Until(newest.Add(time.Second + 20*time.Millisecond)))
}

// kill runs `remora backup`, lets setup change its output, and kills it
// with SIGKILL once at returns (saying when that was). It checks what the
// kill left and returns how the run ended.
func (k *killer) kill(i int, setup func(*exec.Cmd), at func(*exec.Cmd) string) string {
	t := k.t
	t.Helper()
	k.pastIDs()
	leftBefore := k.leftovers()
	cmd := remora.Command(k.env, "backup")
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
	left := k.leftovers() - leftBefore
	grew := k.checkListed(fmt.Sprintf("kill %d at %s", i, when))
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
	k.outcome[how]++
	return how
}

// checkListed checks that every backup verified before is still listed,
// verifies the new ones, and returns how many there were.
func (k *killer) checkListed(what string) int {
	t := k.t
	t.Helper()
	var ids []string
	for _, b := range clitest.List(t, remora, k.env) {
		ids = append(ids, b.ID)
	}
	for id := range k.verified {
		if !slices.Contains(ids, id) {
			t.Fatalf("%s: backup %s that was good is gone (listed: %v)", what, id, ids)
		}
	}
	grew := 0
	for _, id := range ids {
		if !k.verified[id] {
			if r := remora.Run(t, k.env, "verify", id); r.Code != 0 {
				t.Fatalf("%s: listed backup %s does not verify: %s", what, id, r)
			}
			k.verified[id] = true
			grew++
		}
	}
	return grew
}

// placed runs the three placed kills.
func (k *killer) placed() {
	t := k.t
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
			testenv.WaitFor(t, "an upload of the big object under way", 2*time.Minute, func() bool {
				return k.b.uploading(cmd.Process.Pid)
			})
			return "the upload of the big object"
		}},
		{afterManifest, func(cmd *exec.Cmd) { cmd.Stdout = fullPipe(t) }, func(cmd *exec.Cmd) string {
			waitBlockedWriting(t, cmd, 1)
			return "its report"
		}},
	} {
		if got := k.kill(i, p.setup, p.at); got != p.want {
			t.Errorf("placed kill %d: %s, want %s", i, got, p.want)
		}
	}
}

// randomly runs the random kills, and checks that the kills hit each phase.
func (k *killer) randomly(seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x6b111))
	for i := range k.b.random {
		delay := time.Duration(rng.Float64() * 1.1 * float64(k.full))
		k.kill(3+i, nil, func(cmd *exec.Cmd) string {
			// A run that ends before the delay is over is a finished
			// one: waiting on would only take time. How long it took is
			// the measure of a whole run for the next delays, which the
			// first one, taken while every backend starts at once, may
			// overstate.
			start := time.Now()
			for end := start.Add(delay); time.Now().Before(end); {
				if exited(cmd.Process.Pid) {
					k.full = time.Since(start)
					break
				}
				time.Sleep(min(5*time.Millisecond, time.Until(end)))
			}
			return delay.String()
		})
	}
	k.t.Logf("seed %d: 3 placed kills and %d between 0 and 1.1 times a backup's time (last %s): %v", seed, k.b.random,
		k.full.Round(time.Millisecond), k.outcome)
	for _, phase := range []string{beforeStored, midUpload, afterManifest} {
		if k.outcome[phase] == 0 {
			k.t.Errorf("no kill landed %s: %v", phase, k.outcome)
		}
	}
}

// restore checks that the next backup succeeds and restores byte-identical.
func (k *killer) restore(want any) {
	t, db := k.t, "rnd_"+k.b.name
	remora.Must(t, k.env, "backup")
	remora.Must(t, k.env, "restore", "--latest", "--into", db)
	if got := testenv.Checksums(t, k.pg, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored after the kills: %v, want %v", got, want)
	}
	k.pg.Psql(t, "postgres", "DROP DATABASE "+db)
}

// sweep runs retention's sweep a day later: it must remove what the killed
// runs left, on the server too, and keep every listed backup.
func (k *killer) sweep() {
	t := k.t
	scope := repo.Scope{Namespace: "shop", Workload: "db-0", Driver: "postgres"}
	before := clitest.List(t, remora, k.env)
	keepAll, _ := retention.Parse("last=10000")
	later := time.Now().Add(repo.LeftoverAge + time.Hour)
	if _, err := repo.Prune(k.ctx, k.st, scope, &keepAll, repo.PruneOptions{Now: later, StorageNow: later}); err != nil {
		t.Fatal(err)
	}
	if after := clitest.List(t, remora, k.env); !reflect.DeepEqual(after, before) {
		t.Fatalf("the sweep changed the listed backups: %d before, %d after", len(before), len(after))
	}
	listedDirs := map[string]bool{}
	for _, b := range before {
		listedDirs[scopePrefix+b.ID+"/"] = true
	}
	k.st.List(k.ctx, "", func(o storage.Object) error {
		if !listedDirs[dirOf(o.Key)] {
			t.Errorf("left after the sweep: %s", o.Key)
		}
		if strings.HasSuffix(o.Key, ".json") { // manifests and verification records
			if rc, err := k.st.Open(k.ctx, o.Key); err == nil {
				var b bytes.Buffer
				io.Copy(&b, rc)
				rc.Close()
				testenv.NoCanary(t, o.Key, b.String())
			}
		}
		return nil
	})
	for _, u := range k.b.unlisted() {
		t.Errorf("left on the server after the sweep: %s", u)
	}
	if k.b.files != nil {
		for _, f := range k.b.files() {
			if !listedDirs[dirOf(f)] {
				t.Errorf("file left after the sweep: %s", f)
			}
		}
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
		if exited(pid) {
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

// exited reports whether process pid, a child not yet waited for, has
// exited: it is a zombie.
func exited(pid int) bool {
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// The second field, the command's name in parentheses, may hold spaces.
	i := strings.LastIndex(string(stat), ") ")
	return i >= 0 && strings.HasPrefix(string(stat[i+2:]), "Z")
}
