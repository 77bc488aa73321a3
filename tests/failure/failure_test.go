package failure

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

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
			r := remora.Run(t, tc.env, tc.args...)
			if r.Code != tc.code {
				t.Fatalf("exit %d, want %d: %s", r.Code, tc.code, r)
			}
			msg := r.Stderr
			if i := strings.LastIndex(msg, "\nremora: "); i >= 0 && (tc.code == 2 || strings.Contains(msg[:i], "retrying")) {
				msg = msg[i+1:] // usage text, or the retries' warnings, come before the error line
			}
			msg = strings.TrimSpace(msg)
			if strings.Count(msg, "\n") != 0 || !strings.HasPrefix(msg, "remora: ") {
				t.Errorf("want one line starting with 'remora: ', got:\n%s", r.Stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q: %s", w, msg)
				}
			}
		})
	}
	if items := clitest.List(t, remora, good); len(items) != 0 {
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
		r := remora.Must(t, env, "backup")
		if strings.Count(r.Stdout, "\nstored in ") != 2 {
			t.Fatalf("backup output: %s", r)
		}
	}
	if n := len(clitest.List(t, remora, env)); n != 2 {
		t.Errorf("the local copy keeps %d backups, want 2 (last=2)", n)
	}
	if n := len(clitest.List(t, remora, append(env, "REMORA_STORAGE="+s3.URL("offsite", "copy")))); n != 3 {
		t.Errorf("the off-site copy keeps %d backups, want 3 (no retention)", n)
	}
	r := remora.Run(t, append(env, "REMORA_STORAGE=file:///nonexistent/remora "+s3.URL("offsite", "copy")), "backup")
	if r.Code != 1 || !strings.Contains(r.Stdout, "FAILED in file:///nonexistent/remora") || !strings.Contains(r.Stdout, "stored in s3://offsite/copy") {
		t.Fatalf("one destination missing: %s", r)
	}
}
