package drivers

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestToolEnv: a tool's environment holds the common variables, those its
// driver passes and sets, and never Remora's secrets, even when asked.
func TestToolEnv(t *testing.T) {
	for k, v := range map[string]string{
		"PATH": "/usr/bin", "HOME": "/home/r", "LC_ALL": "C.UTF-8", "TZ": "UTC",
		"PGSSLMODE": "verify-full", "PGPASSWORD": "ambient", "MYSQL_HOST": "elsewhere",
		"AWS_SECRET_ACCESS_KEY": "s", "REMORA_SMTP_PASSWORD": "s", "AGE_IDENTITY": "s", "LD_PRELOAD": "x.so",
		"SOME_TOKEN": "s",
	} {
		t.Setenv(k, v)
	}
	for _, tc := range []struct {
		name      string
		pass, set []string
		want, not []string
	}{
		{"common only", nil, nil,
			[]string{"PATH=/usr/bin", "HOME=/home/r", "LC_ALL=C.UTF-8", "TZ=UTC"},
			[]string{"PGSSLMODE", "PGPASSWORD", "MYSQL_HOST", "AWS_SECRET_ACCESS_KEY", "REMORA_SMTP_PASSWORD", "AGE_IDENTITY", "LD_PRELOAD", "SOME_TOKEN"}},
		{"passed prefix, set replaces", []string{"PG*"}, []string{"PGSSLMODE=disable"},
			[]string{"PATH=/usr/bin", "PGSSLMODE=disable"},
			[]string{"PGSSLMODE=verify-full", "PGPASSWORD", "MYSQL_HOST", "SOME_TOKEN"}},
		{"never passed even when asked", []string{"AWS_*", "REMORA_SMTP_PASSWORD", "LD_PRELOAD", "PG*"}, []string{"PGPASSWORD=dsn", "MYSQL_PWD=dsn"},
			[]string{"PATH=/usr/bin", "PGSSLMODE=verify-full"},
			[]string{"AWS_SECRET_ACCESS_KEY", "REMORA_SMTP_PASSWORD", "LD_PRELOAD", "PGPASSWORD", "MYSQL_PWD"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := ToolEnv(tc.pass, tc.set...)
			for _, w := range tc.want {
				if !slices.Contains(env, w) {
					t.Errorf("%s missing from %q", w, env)
				}
			}
			for _, kv := range env {
				for _, n := range tc.not {
					if kv == n || strings.HasPrefix(kv, n+"=") {
						t.Errorf("%s given to a tool", kv)
					}
				}
			}
		})
	}
}

// TestCommandEnv: a command given no environment does not inherit Remora's,
// and one given an environment loses what no tool may get.
func TestCommandEnv(t *testing.T) {
	t.Setenv("REMORA_SIGNING_KEY", "s")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	for _, env := range [][]string{nil, {"PATH=/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY=s", "KEEP=1"}} {
		out, err := Command{Path: "/usr/bin/env", Env: env}.Output(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "REMORA_") || strings.Contains(out, "AWS_") {
			t.Errorf("env %q: the tool got:\n%s", env, out)
		}
		if env != nil && !strings.Contains(out, "KEEP=1") {
			t.Errorf("the tool lost a variable it was given:\n%s", out)
		}
	}
}
