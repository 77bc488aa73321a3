package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/testenv"
)

// seedRandom creates database db holding about mib MiB of random bytes, which
// neither compression nor a fast network makes quick to back up.
func seedRandom(t *testing.T, pg *testenv.Postgres, db string, mib int) {
	t.Helper()
	pg.Psql(t, "postgres", "CREATE DATABASE "+quoteIdent(db))
	pg.Psql(t, db, "CREATE TABLE rnd (id serial PRIMARY KEY, b bytea)")
	cmd := pg.Command("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", "COPY rnd (b) FROM STDIN")
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	go func() {
		row := make([]byte, 64<<10)
		for i := 0; i < mib*16; i++ {
			rand.Read(row)
			if _, err := fmt.Fprintf(pw, "\\\\x%s\n", hex.EncodeToString(row)); err != nil {
				break
			}
		}
		pw.Close()
	}()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("load random data: %v\n%s", err, out)
	}
}

// TestKillMidUpload kills `remora backup` with SIGKILL while an object is being
// uploaded: list shows nothing new, and the next backup succeeds.
func TestKillMidUpload(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	seedRandom(t, pg, "rnd", 96)
	fileDir := t.TempDir()

	for _, tc := range []struct {
		name, storage string
		env           []string
		uploading     func() bool // an upload of the big object is under way
	}{
		{"s3", s3.URL("backups", "kill") + "&part-size=5MiB", s3.Env(), func() bool {
			ctx := context.Background()
			core := &minio.Core{Client: s3.Client(t)}
			for u := range core.ListIncompleteUploads(ctx, "backups", "kill/", true) {
				if u.Err != nil {
					continue
				}
				parts, err := core.ListObjectParts(ctx, "backups", u.Key, u.UploadID, 0, 10)
				if err == nil && len(parts.ObjectParts) > 0 {
					return true // at least one part is stored
				}
			}
			return false
		}},
		{"file", "file://" + fileDir, nil, func() bool {
			return writing(fileDir, "rnd.dump.zst.remora-tmp-", 5<<20)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(tc.env, "REMORA_STORAGE="+tc.storage, "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"),
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=rnd")
			mustRemora(t, env, "backup")
			before := listJSON(t, env)
			if len(before) != 1 {
				t.Fatalf("want 1 backup, have %d", len(before))
			}
			time.Sleep(1100 * time.Millisecond) // a new backup ID

			cmd := exec.Command(remoraBin, "backup")
			cmd.Env = append(os.Environ(), env...)
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(60 * time.Second)
			for !tc.uploading() {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					cmd.Wait()
					t.Fatal("the upload never started")
				}
				time.Sleep(5 * time.Millisecond)
			}
			cmd.Process.Signal(syscall.SIGKILL)
			err := cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
				t.Fatalf("backup was not killed mid-upload (it ended first: %v)", err)
			}

			after := listJSON(t, env)
			if len(after) != 1 || after[0].ID != before[0].ID {
				t.Fatalf("after the kill, list shows %d backups: %+v", len(after), after)
			}
			if r := remora(t, env, "restore", "--latest", "--into", "rnd_copy"); r.code != 0 {
				t.Fatalf("restore of the earlier backup after the kill: %s", r)
			}
			pg.Psql(t, "postgres", "DROP DATABASE rnd_copy")

			time.Sleep(1100 * time.Millisecond)
			mustRemora(t, env, "backup")
			if got := listJSON(t, env); len(got) != 2 {
				t.Fatalf("after the next backup, list shows %d backups, want 2", len(got))
			}
			mustRemora(t, env, "verify", "--all")
		})
	}
}

// TestBadInput: every mistake gives one clear line, a non-zero exit, no
// secret, and nothing that list would show.
func TestBadInput(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	good := append(s3.Env(), "REMORA_STORAGE="+s3.URL("backups", "bad"), "REMORA_DRIVER=postgres",
		"REMORA_DSN="+pg.DSN("postgres"), "REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0")
	with := func(kv ...string) []string { return append(append([]string{}, good...), kv...) }
	closedPort := testenv.FreePort(t)

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want []string // substrings of the one line
	}{
		{"unreachable database", with(fmt.Sprintf("REMORA_DSN=postgres://postgres:%s@127.0.0.1:%d/postgres", testenv.Canary, closedPort)),
			[]string{"backup"}, 1, []string{fmt.Sprintf("127.0.0.1:%d", closedPort), "cannot connect", "check the DSN"}},
		{"wrong password", with("REMORA_DSN=postgres://postgres:wrong-" + testenv.Canary + "@127.0.0.1:" + fmt.Sprint(pg.Port) + "/postgres"),
			[]string{"backup"}, 1, []string{`login as "postgres" refused`, "password"}},
		{"password on the command line", good,
			[]string{"backup", "--dsn", "postgres://postgres:wrong-" + testenv.Canary + "@127.0.0.1:" + fmt.Sprint(pg.Port) + "/postgres"}, 1, []string{"refused"}},
		{"missing database", with("REMORA_DSN=" + pg.DSN("nosuchdb")), []string{"backup"}, 1, []string{`database "nosuchdb" does not exist`}},
		{"unknown --databases", good, []string{"backup", "--databases", "postgres,nosuchdb"}, 1, []string{`"nosuchdb" not found`, "--databases"}},
		{"missing bucket", with("REMORA_STORAGE=" + s3.URL("nobucket", "p")), []string{"backup"}, 1, []string{`bucket "nobucket" does not exist`}},
		{"wrong storage secret", with("AWS_SECRET_ACCESS_KEY=wrong-" + testenv.Canary), []string{"backup"}, 1, []string{"access denied", "AWS_SECRET_ACCESS_KEY"}},
		{"unreachable storage", with(fmt.Sprintf("REMORA_STORAGE=s3://backups/p?endpoint=127.0.0.1:%d&insecure=true", closedPort)), []string{"backup"}, 1, []string{"cannot reach"}},
		{"bad storage URL", with("REMORA_STORAGE=s3//backups"), []string{"backup"}, 2, []string{"bad storage URL", "s3://bucket/prefix"}},
		{"storage URL with a key", with("REMORA_STORAGE=s3://key:" + testenv.Canary + "@backups/p"), []string{"list"}, 2, []string{"credentials do not belong in the URL"}},
		{"missing storage", with("REMORA_STORAGE="), []string{"list"}, 2, []string{"--storage"}},
		{"missing directory", with("REMORA_STORAGE=file:///nonexistent/remora"), []string{"backup"}, 1, []string{"/nonexistent/remora does not exist"}},
		{"no DSN", with("REMORA_DSN="), []string{"backup"}, 2, []string{"--dsn"}},
		{"unknown driver", with("REMORA_DRIVER=oracle"), []string{"backup"}, 2, []string{`unknown driver "oracle"`, "postgres"}},
		{"bad DSN", with("REMORA_DSN=host=localhost password=" + testenv.Canary), []string{"backup"}, 2, []string{"must be a URL"}},
		{"unknown backup ID", good, []string{"restore", "20200101T000000Z", "--into", "x"}, 1, []string{`no backup with ID "20200101T000000Z"`, "remora list"}},
		{"no backup chosen", good, []string{"restore"}, 2, []string{"--latest"}},
		{"no backups yet", good, []string{"verify"}, 1, []string{"no backups"}},
		{"bad --before", good, []string{"restore", "--before", "yesterday"}, 2, []string{"--before"}},
		{"unknown flag", good, []string{"backup", "--nope"}, 2, []string{"nope"}},
		{"unknown command", good, []string{"bakup"}, 2, []string{`unknown command "bakup"`}},
		{"bad namespace", with("REMORA_NAMESPACE=a/b"), []string{"backup"}, 1, []string{`namespace "a/b"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := remora(t, tc.env, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d: %s", r.code, tc.code, r)
			}
			msg := r.stderr
			if i := strings.LastIndex(msg, "\nremora: "); i >= 0 && (tc.code == 2 || strings.Contains(msg[:i], "retrying")) {
				msg = msg[i+1:] // usage text, or the retries' warnings, come before the error line
			}
			msg = strings.TrimSpace(msg)
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "remora: ") {
				t.Errorf("want one line starting with 'remora: ', got:\n%s", r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q: %s", w, msg)
				}
			}
		})
	}
	if items := listJSON(t, good); len(items) != 0 {
		t.Fatalf("failed commands left backups: %+v", items)
	}
	var keys []string
	for o := range s3.Client(t).ListObjects(context.Background(), "backups", minio.ListObjectsOptions{Recursive: true}) {
		keys = append(keys, o.Key)
	}
	if len(keys) != 0 {
		t.Fatalf("failed commands left objects: %v", keys)
	}
}

// TestInterrupted: SIGTERM during a backup stops it at once, says so, and
// removes what it had written.
func TestInterrupted(t *testing.T) {
	pg := testenv.StartPostgres(t)
	seedRandom(t, pg, "rnd", 64)
	dir := t.TempDir()
	env := pgEnv(pg, "file://"+dir, "REMORA_DATABASES=rnd", "REMORA_COMPRESSION=none")
	cmd := exec.Command(remoraBin, "backup")
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the big object is being written.
	deadline := time.Now().Add(60 * time.Second)
	for !writing(dir, "rnd.dump.remora-tmp-", 1<<20) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the dump never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	if err == nil {
		t.Fatal("an interrupted backup exited 0")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to stop", d)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say it was interrupted:\n%s", stderr.String())
	}
	if left := filesUnder(dir); len(left) != 0 {
		t.Fatalf("an interrupted backup left %v", left)
	}
	if n := pg.Psql(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' OR query LIKE 'COPY%'"); n != "0" {
		// pg_dump may need a moment to notice; give it one.
		time.Sleep(2 * time.Second)
		if n := pg.Psql(t, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY public.rnd%'"); n != "0" {
			t.Errorf("pg_dump still running after the interrupt (%s sessions)", n)
		}
	}
}

// TestSocketDSN backs up over the unix socket: postgres://user@/db?host=/dir.
func TestSocketDSN(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	env := []string{"REMORA_STORAGE=file://" + t.TempDir(), "REMORA_DRIVER=postgres",
		"REMORA_DSN=postgres://postgres@/postgres?host=" + pg.SocketDir + "&port=" + fmt.Sprint(pg.Port),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0"}
	mustRemora(t, env, "backup")
	if items := listJSON(t, env); len(items) != 1 || items[0].Databases[0] != "postgres" {
		t.Fatalf("list: %+v", items)
	}
}

// TestSeveralDestinations: --storage repeated, each with its own retention
// after '#'; list reads the first unless told otherwise.
func TestSeveralDestinations(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "offsite")
	local := t.TempDir()
	env := append(s3.Env(), "REMORA_DRIVER=postgres", "REMORA_DSN="+pg.DSN("postgres"), "REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0",
		"REMORA_STORAGE=file://"+local+"#last=2 "+s3.URL("offsite", "copy"))
	for i := 0; i < 3; i++ {
		r := mustRemora(t, env, "backup")
		if strings.Count(r.stdout, "\nstored in ") != 2 {
			t.Fatalf("backup output: %s", r)
		}
		time.Sleep(1100 * time.Millisecond)
	}
	if n := len(listJSON(t, env)); n != 2 {
		t.Errorf("the local copy keeps %d backups, want 2 (last=2)", n)
	}
	if n := len(listJSON(t, append(env, "REMORA_STORAGE="+s3.URL("offsite", "copy")))); n != 3 {
		t.Errorf("the off-site copy keeps %d backups, want 3 (no retention)", n)
	}
	r := remora(t, append(env, "REMORA_STORAGE=file:///nonexistent/remora "+s3.URL("offsite", "copy")), "backup")
	if r.code != 1 || !strings.Contains(r.stdout, "FAILED in file:///nonexistent/remora") || !strings.Contains(r.stdout, "stored in s3://offsite/copy") {
		t.Fatalf("one destination missing: %s", r)
	}
}
