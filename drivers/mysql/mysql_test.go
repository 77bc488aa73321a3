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
