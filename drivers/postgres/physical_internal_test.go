package postgres

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestReplErrorNamesTheFix: the server's refusals of a replication
// connection become one line saying what to change.
func TestReplErrorNamesTheFix(t *testing.T) {
	for _, tc := range []struct {
		err  *pgconn.PgError
		want string
	}{
		{&pgconn.PgError{Code: "28000", Message: `no pg_hba.conf entry for replication connection from host "10.0.0.5", user "app", no encryption`}, "host replication app"},
		{&pgconn.PgError{Code: "42501", Message: "permission denied to start WAL sender"}, `ALTER ROLE "app" REPLICATION`},
		{&pgconn.PgError{Code: "53300", Message: "number of requested standby connections exceeds max_wal_senders (currently 0)"}, "wal_level = replica"},
		{&pgconn.PgError{Code: "53300", Message: "number of requested standby connections exceeds max_wal_senders (currently 10)"}, "raise max_wal_senders"},
	} {
		err := replError("db:5432", "app", tc.err, "")
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want %q", tc.err.Message, err, tc.want)
		}
	}
}

// TestTablespaceMapOIDs: the OIDs of a tablespace_map, a path's escaped
// newline not taken for a new line.
func TestTablespaceMapOIDs(t *testing.T) {
	got := tablespaceMapOIDs([]byte("16384 /a/b\n16390 /odd\\\npath\n"))
	if strings.Join(got, ",") != "16384,16390" {
		t.Errorf("got %v", got)
	}
	if e := escapeMapPath("/odd\npath\\x"); e != "/odd\\\npath\\\\x" {
		t.Errorf("escape: %q", e)
	}
}
