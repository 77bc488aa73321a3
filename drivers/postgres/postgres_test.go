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
	found := false
	for _, kv := range d.env() {
		found = found || kv == "PGPASSWORD=pa@ss"
	}
	if !found {
		t.Error("PGPASSWORD not given to the tools")
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

func TestEnvKeepsAmbientPGPASSWORD(t *testing.T) {
	t.Setenv("PGPASSWORD", "from-env")
	d, _ := New(drivers.Config{DSN: "postgres://app@h/db"})
	var got []string
	for _, kv := range d.env() {
		if strings.HasPrefix(kv, "PGPASSWORD=") {
			got = append(got, kv)
		}
	}
	if len(got) != 1 || got[0] != "PGPASSWORD=from-env" {
		t.Errorf("PGPASSWORD entries given to the tools: %q, want the ambient one once", got)
	}
}
