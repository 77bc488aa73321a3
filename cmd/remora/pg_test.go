package main

import (
	"encoding/json"
	"strings"
	"testing"

	"remora.dev/remora/agent/backup"
	"remora.dev/remora/internal/testenv"
)

// seedOdd creates a database with the types that trip dump tools: bytea with
// zero bytes, jsonb, arrays with quotes and NULLs, numeric, uuid, a large
// object, and a role with a grant.
func seedOdd(t *testing.T, pg *testenv.Postgres, db string) {
	t.Helper()
	pg.Psql(t, "postgres", `CREATE DATABASE `+quoteIdent(db))
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

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// checksums returns, for every table of a database, its row count and an
// order-independent hash of its rows, plus the same for its large objects.
func checksums(t *testing.T, pg *testenv.Postgres, db string) map[string]string {
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

func sameChecksums(t *testing.T, what string, want, got map[string]string) {
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

// listJSON runs remora list --json.
func listJSON(t *testing.T, env []string) []listItem {
	t.Helper()
	r := mustRemora(t, env, "list", "--json")
	var items []listItem
	if err := json.Unmarshal([]byte(r.stdout), &items); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	return items
}

var _ = backup.ManifestName
