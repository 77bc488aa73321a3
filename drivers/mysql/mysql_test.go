package mysql

import (
	"slices"
	"strings"
	"testing"

	"remora.dev/remora/drivers"
)

func TestNew(t *testing.T) {
	d, err := New(drivers.Config{DSN: "mysql://app:s%40cret@db.example:3307/"})
	if err != nil {
		t.Fatal(err)
	}
	if d.password != "s@cret" || d.where != "db.example:3307" || !slices.Contains(d.conn, "--port=3307") {
		t.Errorf("%+v", d)
	}
	for _, a := range d.conn {
		if strings.Contains(a, "cret") {
			t.Errorf("the password is in the tools' arguments: %q", a)
		}
	}
	d, _ = New(drivers.Config{DSN: "mysql://root@/?socket=/run/mysqld/mysqld.sock"})
	if !slices.Contains(d.conn, "--socket=/run/mysqld/mysqld.sock") {
		t.Errorf("socket: %v", d.conn)
	}
	for _, dsn := range []string{"postgres://x", "mysql://u@h/db", "mysql://u@h/?tls=1", "root:pw@tcp(h)/"} {
		if _, err := New(drivers.Config{DSN: dsn}); err == nil {
			t.Errorf("%s accepted", dsn)
		}
	}
}

func TestSQLQuoting(t *testing.T) {
	if got := sqlString(`it's \ odd`); got != `'it\'s \\ odd'` {
		t.Errorf("sqlString: %s", got)
	}
	if got := sqlIdent("we`ird"); got != "`we``ird`" {
		t.Errorf("sqlIdent: %s", got)
	}
}

// TestCommandPassword: the tools read the password from the option file their
// first argument names, or no option file at all without a password; never
// from MYSQL_PWD.
func TestCommandPassword(t *testing.T) {
	t.Setenv("MYSQL_PWD", "ambient")
	for _, tc := range []struct {
		dsn, first, file string
	}{
		{"mysql://app:a%22b%5C%23@h/", "--defaults-file=", "[client]\npassword=\"a\\\"b\\\\#\"\n"},
		{"mysql://app:%20x%0A@h/", "--defaults-file=", "[client]\npassword=\" x\\n\"\n"},
		{"mysql://app@h/", "--no-defaults", ""},
		{"mysql://app:@h/", "--no-defaults", ""},
	} {
		d, err := New(drivers.Config{DSN: tc.dsn})
		if err != nil {
			t.Fatal(err)
		}
		cmd := d.command("/usr/bin/mariadb", "--batch")
		var first string
		if cmd.Secret != nil {
			first = cmd.Secret.Arg
			if cmd.Secret.Content != tc.file {
				t.Errorf("%s: option file %q, want %q", tc.dsn, cmd.Secret.Content, tc.file)
			}
		} else if len(cmd.Args) > 0 {
			first = cmd.Args[0]
		}
		if first != tc.first || slices.Contains(cmd.Args, "--no-defaults") != (tc.first == "--no-defaults") {
			t.Errorf("%s: first argument %q (args %q), want %q", tc.dsn, first, cmd.Args, tc.first)
		}
		for _, kv := range cmd.Env {
			if strings.HasPrefix(kv, "MYSQL_PWD=") {
				t.Errorf("%s: the tool gets %s", tc.dsn, kv)
			}
		}
	}
}

func TestNewRefusesPasswordsNoFileHolds(t *testing.T) {
	for _, pw := range []string{"a%00b", strings.Repeat("x", 4000)} {
		_, err := New(drivers.Config{DSN: "mysql://app:" + pw + "@h/"})
		if err == nil || strings.Contains(err.Error(), "xxxx") {
			t.Errorf("password of %d bytes: %v", len(pw), err)
		}
	}
}
