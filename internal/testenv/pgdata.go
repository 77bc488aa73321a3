package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"
)

// SeedOdd creates a database with the types that trip dump tools: bytea with
// zero bytes, jsonb, arrays with quotes and NULLs, numeric, uuid, a large
// object, and a role with a grant.
func SeedOdd(t testing.TB, pg *Postgres, db string) {
	t.Helper()
	pg.Psql(t, "postgres", `CREATE DATABASE `+QuoteIdent(db))
	pg.Psql(t, db, `
CREATE TABLE odd (id serial PRIMARY KEY, b bytea, j jsonb, a int[], s text[], ts timestamptz, n numeric, u uuid);
INSERT INTO odd (b, j, a, s, ts, n, u)
  SELECT decode(md5(i::text), 'hex') || '\x00ff00'::bytea,
         jsonb_build_object('k', i, 'arr', jsonb_build_array(i, 'x''y', NULL), 'ü', '✓'),
         ARRAY[i, i * 2, NULL], ARRAY['a,b', 'quo"te', NULL, E'new\nline'],
         '2026-01-01'::timestamptz + i * interval '1 hour', i / 7.0, md5(i::text)::uuid
  FROM generate_series(1, 2000) i;
SELECT lo_from_bytea(0, decode(repeat('deadbeef00', 50000), 'hex'));
CREATE VIEW odd_view AS SELECT id, j->>'k' AS k FROM odd;
DO $$ BEGIN CREATE ROLE app_reader LOGIN PASSWORD 'reader-pw'; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT SELECT ON odd TO app_reader;
`)
}

// SeedRandom creates database db holding about mib MiB of random bytes, which
// neither compression nor a fast network makes quick to back up.
func SeedRandom(t testing.TB, pg *Postgres, db string, mib int) {
	t.Helper()
	pg.Psql(t, "postgres", "CREATE DATABASE "+QuoteIdent(db))
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

// QuoteIdent quotes a PostgreSQL identifier.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Checksums returns, for every table of a database, its row count and an
// order-independent hash of its rows, plus the same for its large objects
// and app_reader's grants.
func Checksums(t testing.TB, pg *Postgres, db string) map[string]string {
	t.Helper()
	tables := strings.Fields(pg.Psql(t, db, `SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
		WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`))
	out := map[string]string{}
	for _, tbl := range tables {
		out[tbl] = pg.Psql(t, db, `SELECT count(*) || ':' || coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) FROM `+tbl+` t`)
	}
	out["(large objects)"] = pg.Psql(t, db, `SELECT count(*) || ':' || coalesce(md5(string_agg(oid::text || ':' || md5(lo_get(oid)), ',' ORDER BY oid)), '') FROM pg_largeobject_metadata`)
	out["(grants)"] = pg.Psql(t, db, `SELECT coalesce(string_agg(grantee || ':' || table_name || ':' || privilege_type, ',' ORDER BY 1), '') FROM information_schema.role_table_grants WHERE grantee = 'app_reader'`)
	return out
}

// SameChecksums compares two results of Checksums.
func SameChecksums(t testing.TB, what string, want, got map[string]string) {
	t.Helper()
	if len(want) < 2 {
		t.Fatalf("%s: nothing to compare: %v", what, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s: got %q, want %q", what, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected table %s", what, k)
		}
	}
}
