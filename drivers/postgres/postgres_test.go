package postgres

import (
	"strings"
	"testing"

	"remora.dev/remora/drivers"
)

func TestNewKeepsThePasswordOutOfToolArguments(t *testing.T) {
	d, err := New(drivers.Config{DSN: "postgres://app:pa%40ss@db.example:6432/main?sslmode=require"})
	if err != nil {
		t.Fatal(err)
	}
	u := d.dbURL("we/ird db")
	if strings.Contains(u, "pa") && strings.Contains(u, "ss@") {
		t.Errorf("tool URL holds the password: %s", u)
	}
	if want := "postgres://app@db.example:6432/we%2Fird%20db?application_name=remora&sslmode=require"; u != want {
		t.Errorf("dbURL = %s\nwant    %s", u, want)
	}
	if d.password != "pa@ss" || d.adminDB != "main" {
		t.Errorf("password %q adminDB %q", d.password, d.adminDB)
	}
	for _, kv := range d.env() {
		if strings.Contains(kv, "pa@ss") {
			t.Errorf("the tools' environment holds the password: %s", kv)
		}
	}
}

func TestNewSocketDSN(t *testing.T) {
	d, err := New(drivers.Config{DSN: "postgres://postgres@/?host=/var/run/postgresql"})
	if err != nil {
		t.Fatal(err)
	}
	if d.adminDB != "postgres" || d.dbURL("x") != "postgres://postgres@/x?application_name=remora&host=%2Fvar%2Frun%2Fpostgresql" {
		t.Errorf("adminDB %q, dbURL %s", d.adminDB, d.dbURL("x"))
	}
}

func TestNewRejectsNonURLs(t *testing.T) {
	for _, dsn := range []string{"", "host=x password=y", "mysql://x/", "postgres//x"} {
		if _, err := New(drivers.Config{DSN: dsn}); err == nil {
			t.Errorf("New(%q) accepted it", dsn)
		} else if strings.Contains(err.Error(), "password=y") {
			t.Errorf("error quotes the DSN: %v", err)
		}
	}
}

// TestPassfile: the tools get the password (the DSN's, else Remora's
// PGPASSWORD) in a libpq password file, escaped, never in their environment
// or their --dbname; without one they read the operator's own.
func TestPassfile(t *testing.T) {
	for _, tc := range []struct {
		name, dsn, ambient string
		want               string // the file; "" for none
	}{
		{"from the DSN", "postgres://app:a%3Ab%5Cc@h/db", "", `*:*:*:*:a\:b\\c` + "\n"},
		{"the DSN's before PGPASSWORD", "postgres://app:dsn@h/db", "env", "*:*:*:*:dsn\n"},
		{"from a password parameter", "postgres://app@h/db?password=q%3Aq&sslmode=require", "env", `*:*:*:*:q\:q` + "\n"},
		{"from PGPASSWORD", "postgres://app@h/db", "a:b", `*:*:*:*:a\:b` + "\n"},
		{"none", "postgres://app@h/db", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PGPASSWORD", tc.ambient)
			d, err := New(drivers.Config{DSN: tc.dsn})
			if err != nil {
				t.Fatal(err)
			}
			cmd := d.tool("pg_dump", "--dbname="+d.dbURL("db"))
			switch {
			case tc.want == "" && cmd.Secret != nil:
				t.Errorf("a password file without a password: %q", cmd.Secret.Content)
			case tc.want != "" && (cmd.Secret == nil || cmd.Secret.Content != tc.want || cmd.Secret.Env != "PGPASSFILE"):
				t.Errorf("password file %+v, want %q in PGPASSFILE", cmd.Secret, tc.want)
			}
			for _, s := range append(cmd.Env, cmd.Args...) {
				if strings.HasPrefix(s, "PGPASSWORD=") || strings.Contains(s, "password=") {
					t.Errorf("the tool gets the password in %q", s)
				}
			}
		})
	}
}

func TestNewRefusesALineBreakInThePassword(t *testing.T) {
	for _, dsn := range []string{"postgres://app:a%0Ab@h/db", "postgres://app:a%0Db@h/db"} {
		if _, err := New(drivers.Config{DSN: dsn}); err == nil || !strings.Contains(err.Error(), "line break") {
			t.Errorf("%s: %v", dsn, err)
		}
	}
}
