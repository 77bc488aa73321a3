package drivers_test

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/drivers/postgres"
	"remora.dev/remora/internal/testenv"
)

// awkwardPasswords are passwords that a password file must quote or escape:
// what starts a comment, ends or escapes a value, or is trimmed from one.
var awkwardPasswords = []struct {
	name, password string
	lineBreak      bool // libpq's password file cannot hold it
}{
	{"comment sign", "#not a comment", false},
	{"comment sign inside", "a # b", false},
	{"semicolon first", ";x", false},
	{"leading and trailing spaces", "  spaced  ", false},
	{"double quotes", `"quoted"`, false},
	{"single quotes", `'quoted'`, false},
	{"one double quote", `a"b`, false},
	{"backslashes", `a\b\\c\"d\n`, false},
	{"trailing backslash", `ends\`, false},
	{"colons", `a:b\:c:`, false},
	{"equals and brackets", "[client]=x", false},
	{"tab", "a\tb", false},
	{"not ascii", "pässwörd✓", false},
	{"line break", "one\ntwo", true},
}

// TestAwkwardPasswordsLogIn: the tools log in with passwords that need
// quoting or escaping in the file they read them from, against real servers.
func TestAwkwardPasswordsLogIn(t *testing.T) {
	pg := testenv.StartPostgres(t)
	m := testenv.StartMariaDB(t)
	m.SQL(t, "CREATE DATABASE pwtest; CREATE TABLE pwtest.t (id int); INSERT INTO pwtest.t VALUES (1)")
	for i, tc := range awkwardPasswords {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			user := fmt.Sprintf("awk%d", i)
			m.SQL(t, fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'; GRANT ALL ON *.* TO '%[1]s'@'%%'",
				user, strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(tc.password)))
			dsn := fmt.Sprintf("mysql://%s@127.0.0.1:%d/", url.UserPassword(user, tc.password), m.Port)
			if err := dumpAll(ctx, mysql.Name, drivers.Config{DSN: dsn, Databases: []string{"pwtest"}}); err != nil {
				t.Errorf("mysql: %v", err)
			}

			pg.Psql(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'", user, strings.ReplaceAll(tc.password, "'", "''")))
			dsn = fmt.Sprintf("postgres://%s@127.0.0.1:%d/postgres", url.UserPassword(user, tc.password), pg.Port)
			err := dumpAll(ctx, postgres.Name, drivers.Config{DSN: dsn})
			switch {
			case tc.lineBreak && (err == nil || !strings.Contains(err.Error(), "line break")):
				t.Errorf("postgres: a password with a line break: %v, want it refused", err)
			case !tc.lineBreak && err != nil:
				t.Errorf("postgres: %v", err)
			}
			if err != nil && strings.Contains(err.Error(), tc.password) {
				t.Errorf("the error quotes the password: %v", err)
			}
		})
	}
}

// dumpAll plans a backup and dumps every object.
func dumpAll(ctx context.Context, driver string, cfg drivers.Config) error {
	d, err := drivers.New(driver, cfg)
	if err != nil {
		return err
	}
	plan, err := d.Plan(ctx)
	if err != nil {
		return err
	}
	for _, obj := range plan.Objects {
		if err := d.Dump(ctx, obj, io.Discard); err != nil {
			return fmt.Errorf("%s: %w", obj.Name, err)
		}
	}
	return nil
}
