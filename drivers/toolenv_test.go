package drivers_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/drivers/redis"
	"remora.dev/remora/internal/testenv"
)

// leak is the value of every secret the test puts in its environment.
const leak = "leak-canary-5e1d9a"

// secrets are variables an agent's environment holds that no tool may see.
var secrets = map[string]string{
	"AWS_ACCESS_KEY_ID":     leak,
	"AWS_SECRET_ACCESS_KEY": leak,
	"REMORA_SIGNING_KEY":    leak,
	"REMORA_SMTP_PASSWORD":  leak,
	"REMORA_DB_PASSWORD":    leak,
	"REMORA_DSN":            "postgres://app:" + leak + "@db/app",
	"AGE_IDENTITY":          leak,
	"PGPASSWORD":            leak,
	"MYSQL_PWD":             leak,
	"REDISCLI_AUTH":         leak,
	"LD_PRELOAD":            "",
	"LD_LIBRARY_PATH":       "/nonexistent/" + leak,
}

// forbidden are the name prefixes no tool's environment may hold.
var forbidden = []string{"AWS_", "REMORA_", "AGE_", "LD_PRELOAD=", "LD_LIBRARY_PATH=", "PGPASSWORD=", "MYSQL_PWD=", "REDISCLI_AUTH="}

// wrap puts, in a new directory, a script named after each tool that writes
// its environment to a file of out/env and the modes of the password file it
// was given (PGPASSFILE or a leading --defaults-file) and of that file's
// directory to a file of out/secret, then runs the real tool; it returns the
// directory.
func wrap(t *testing.T, out string, real map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"env", "secret"} {
		if err := os.Mkdir(filepath.Join(out, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, path := range real {
		script := fmt.Sprintf(`#!/bin/sh
/usr/bin/env >'%[1]s/env/%[2]s.'$$
f=${PGPASSFILE:-}
case "$1" in --defaults-file=*) f=${1#--defaults-file=} ;; esac
if [ -n "$f" ]; then stat -c '%%a %%n' "$f" "${f%%/*}" >'%[1]s/secret/%[2]s.'$$; fi
exec '%[3]s' "$@"
`, out, name, path)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func lookPaths(t *testing.T, dir string, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if dir == "" {
			var err error
			if p, err = exec.LookPath(n); err != nil {
				testenv.Missing(t, n, "install the database's client tools")
			}
		}
		out[n] = p
	}
	return out
}

type envCase struct {
	name  string
	tools []string // the children the case starts, each wrapped
	need  []string // variables the tools must get
	// secret are the tools that must get the password in a file
	secret []string
	// setup starts the server (before the test's environment is poisoned)
	// and returns the real paths of the tools and what runs them.
	setup func(t *testing.T) (real map[string]string, run func(ctx context.Context, t *testing.T, wrapped string) error)
}

// pgCase backs up and restores with the PostgreSQL tools; ambient: the DSN
// has no password, Remora's environment has it in PGPASSWORD.
func pgCase(ambient bool) func(t *testing.T) (map[string]string, func(context.Context, *testing.T, string) error) {
	return func(t *testing.T) (map[string]string, func(context.Context, *testing.T, string) error) {
		pg := testenv.StartPostgres(t)
		dsn := pg.DSN("postgres")
		if ambient {
			dsn = pg.DSNNoPassword("postgres")
		}
		return lookPaths(t, pg.Bin, "pg_dump", "pg_dumpall", "psql"), func(ctx context.Context, t *testing.T, wrapped string) error {
			t.Setenv("REMORA_PG_BIN", wrapped)
			if ambient {
				t.Setenv("PGPASSWORD", testenv.Canary)
			}
			if err := dumpAll(ctx, postgres.Name, drivers.Config{DSN: dsn}); err != nil {
				return err
			}
			d, err := drivers.New(postgres.Name, drivers.Config{DSN: dsn})
			if err != nil {
				return err
			}
			globals := drivers.Object{Name: "globals.sql", Kind: drivers.KindGlobals, Format: postgres.FormatSQL}
			return d.Restore(ctx, globals, strings.NewReader("SELECT 1;\n"), drivers.RestoreOptions{Yes: true})
		}
	}
}

var envCases = []envCase{
	{name: "postgres", tools: []string{"pg_dump", "pg_dumpall", "psql"}, need: []string{"PGPASSFILE=", "PGCONNECT_TIMEOUT="},
		secret: []string{"pg_dump", "pg_dumpall", "psql"}, setup: pgCase(false)},
	{name: "postgres password from PGPASSWORD", tools: []string{"pg_dump", "pg_dumpall", "psql"}, need: []string{"PGPASSFILE="},
		secret: []string{"pg_dump", "pg_dumpall", "psql"}, setup: pgCase(true)},
	{name: "mysql", tools: []string{"mariadb-dump", "mariadb"}, secret: []string{"mariadb-dump", "mariadb"},
		setup: func(t *testing.T) (map[string]string, func(context.Context, *testing.T, string) error) {
			m := testenv.StartMariaDB(t)
			m.SQL(t, "CREATE DATABASE envtest; CREATE TABLE envtest.t (id int); INSERT INTO envtest.t VALUES (1);")
			return lookPaths(t, "", "mariadb-dump", "mariadb"), func(ctx context.Context, t *testing.T, wrapped string) error {
				t.Setenv("PATH", wrapped+":"+os.Getenv("PATH"))
				if err := dumpAll(ctx, mysql.Name, drivers.Config{DSN: m.DSN(), Databases: []string{"envtest"}}); err != nil {
					return err
				}
				return nil
			}
		}},
	{name: "redis", tools: []string{"redis-server"},
		setup: func(t *testing.T) (map[string]string, func(context.Context, *testing.T, string) error) {
			r := testenv.StartRedis(t)
			if err := r.Client().Set(context.Background(), "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			return lookPaths(t, "", "redis-server"), func(ctx context.Context, t *testing.T, wrapped string) error {
				t.Setenv("PATH", wrapped+":"+os.Getenv("PATH"))
				d, err := drivers.New(redis.Name, drivers.Config{DSN: r.DSN()})
				if err != nil {
					return err
				}
				plan, err := d.Plan(ctx)
				if err != nil {
					return err
				}
				var rdb bytes.Buffer
				if err := d.Dump(ctx, plan.Objects[0], &rdb); err != nil {
					return err
				}
				opts := drivers.RestoreOptions{Yes: true}
				if err := d.CheckRestore(ctx, plan.Objects, opts); err != nil {
					return err
				}
				return d.Restore(ctx, plan.Objects[0], &rdb, opts)
			}
		}},
}

// TestToolsGetOnlyTheirEnvironment: every tool a driver starts runs with an
// environment of its own: the agent's secrets (storage keys, the SMTP
// password, the signing key, ...), loader variables and the database password
// (the DSN's or Remora's own PGPASSWORD) never reach it; the password comes in
// a file, mode 0600 in a directory of its own (0700), gone once the tool is
// done, and the tool logs in with it.
func TestToolsGetOnlyTheirEnvironment(t *testing.T) {
	for _, tc := range envCases {
		t.Run(tc.name, func(t *testing.T) {
			real, run := tc.setup(t)
			out := t.TempDir()
			wrapped := wrap(t, out, real)
			for k, v := range secrets {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := run(ctx, t, wrapped); err != nil {
				t.Fatal(err)
			}
			checkEnvs(t, out, tc.tools, tc.need)
			checkSecrets(t, out, tc.secret)
		})
	}
}

// checkEnvs reads the environments the wrapped tools wrote: each tool ran,
// no environment holds a forbidden variable or a secret's value, and each
// tool got what it needs at least once (its --version runs need nothing).
func checkEnvs(t *testing.T, out string, tools, need []string) {
	t.Helper()
	ran := map[string]bool{}
	got := map[string]bool{} // tool + " " + needed variable
	files, _ := filepath.Glob(filepath.Join(out, "env", "*"))
	for _, f := range files {
		tool := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		ran[tool] = true
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for _, line := range lines {
			for _, p := range forbidden {
				if strings.HasPrefix(line, p) {
					t.Errorf("%s got %s", tool, line)
				}
			}
			if strings.Contains(line, leak) || strings.Contains(line, testenv.Canary) {
				t.Errorf("%s got a secret: %s", tool, line)
			}
		}
		if !hasLine(lines, "PATH=") {
			t.Errorf("%s did not get PATH", tool)
		}
		for _, n := range need {
			got[tool+" "+n] = got[tool+" "+n] || hasLine(lines, n)
		}
	}
	for _, tool := range tools {
		if !ran[tool] {
			t.Errorf("%s never ran (ran: %v)", tool, ran)
		}
		for _, n := range need {
			if ran[tool] && !got[tool+" "+n] {
				t.Errorf("%s never got %s", tool, n)
			}
		}
	}
}

// checkSecrets reads the modes the wrapped tools recorded of the password
// files they were given: each of tools got one at least once, every file was
// 0600 in a directory of 0700, and none is left now that the tools are done.
func checkSecrets(t *testing.T, out string, tools []string) {
	t.Helper()
	got := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(out, "secret", "*"))
	for _, f := range files {
		tool := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		got[tool] = true
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for i, want := range []string{"600", "700"} {
			mode, path, _ := strings.Cut(lines[min(i, len(lines)-1)], " ")
			if len(lines) != 2 || mode != want {
				t.Errorf("%s: password file and directory modes %q, want 600 and 700", tool, lines)
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("%s: %s is left after the tool ended (%v)", tool, path, err)
			}
		}
	}
	for _, tool := range tools {
		if !got[tool] {
			t.Errorf("%s never got a password file (got: %v)", tool, got)
		}
	}
}

// hasLine reports whether a line is want or, when want ends in "=", starts
// with it.
func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want || strings.HasSuffix(want, "=") && strings.HasPrefix(l, want) {
			return true
		}
	}
	return false
}
