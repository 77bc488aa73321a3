#!/usr/bin/env bash
# Remora demo: starts a throwaway PostgreSQL and a throwaway S3-compatible
# server (versitygw), loads sample data, backs it up with bin/remora, lists
# and verifies the backup, restores one database under a new name and checks
# that every table matches the original.
#
# Run it with `make demo`, which installs the dependencies and builds
# bin/remora and bin/versitygw first. Everything lives in one temp dir that is
# removed on exit; both servers listen on 127.0.0.1 only, on free ports.
# Needs: PostgreSQL server and client tools, python3 (to pick free ports);
# curl is used to create the bucket when present.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
REMORA=bin/remora
VERSITYGW=bin/versitygw

DEMO_PASSWORD=demo-password
S3_ACCESS=demo
S3_SECRET=demo-secret-key
S3_REGION=us-east-1
BUCKET=backups

if [ -t 1 ]; then
  BOLD=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' GREEN=$'\e[32m' RESET=$'\e[0m'
else
  BOLD='' DIM='' RED='' GREEN='' RESET=''
fi

say() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
note() { printf '    %s%s%s\n' "$DIM" "$*" "$RESET"; }
die() { printf '%sdemo: %s%s\n' "$RED" "$*" "$RESET" >&2; exit 1; }
# run prints a command line, then runs it.
run() { printf '%s$ %s%s\n' "$BOLD" "$*" "$RESET"; "$@"; }
# tail_log prints the end of a log file, if it has anything in it.
tail_log() {
  if [ -s "$1" ]; then
    printf '%s--- last lines of %s ---%s\n' "$RED" "$1" "$RESET" >&2
    tail -n 25 "$1" >&2
    printf '%s---%s\n' "$RED" "$RESET" >&2
  fi
}
# quietly LOG CMD...: runs CMD with its output in LOG; on failure shows LOG.
quietly() {
  local log=$1; shift
  if ! "$@" >>"$log" 2>&1; then
    tail_log "$log"
    die "failed: $*"
  fi
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# --- Preflight -----------------------------------------------------------------
for f in "$REMORA" "$VERSITYGW"; do
  [ -x "$f" ] || die "$ROOT/$f is missing: run 'make demo' (or 'make build bin/versitygw')"
done
PGBIN=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/postgres" ] || [ ! -x "$PGBIN/initdb" ]; then
  die "no PostgreSQL server in /usr/lib/postgresql/*/bin: run hack/install-deps.sh"
fi
for tool in psql pgbench pg_isready pg_dump pg_restore python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed: run hack/install-deps.sh"
done
PGVERSION=$(basename "$(dirname "$PGBIN")")

# initdb and postgres refuse to run as root: run them as the postgres user.
AS_PG=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' user to run the server as"
  command -v setpriv >/dev/null 2>&1 || die "running as root needs setpriv (package util-linux)"
  AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
as_pg() { ${AS_PG[@]+"${AS_PG[@]}"} "$@"; }

# --- Temp dir and cleanup --------------------------------------------------------
# A short path under /tmp: the PostgreSQL socket lives in it (107-byte limit).
TMP=$(mktemp -d /tmp/remora-demo.XXXXXX)
PG_PID='' VGW_PID=''
SHOW_SERVER_LOGS=1 # on failure, show the end of the server logs

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "$status" -ne 0 ]; then
    printf '\n%sdemo failed (exit %d)%s\n' "$RED" "$status" "$RESET" >&2
    if [ "$SHOW_SERVER_LOGS" -eq 1 ]; then
      tail_log "$TMP/postgres.log"
      tail_log "$TMP/versitygw.log"
    fi
  fi
  if [ -n "$PG_PID" ]; then
    kill -INT "$PG_PID" 2>/dev/null || true # fast shutdown
    wait "$PG_PID" 2>/dev/null || true
  fi
  if [ -n "$VGW_PID" ]; then
    kill -TERM "$VGW_PID" 2>/dev/null || true
    wait "$VGW_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'SHOW_SERVER_LOGS=0; exit 130' INT
trap 'SHOW_SERVER_LOGS=0; exit 143' TERM

if [ ${#AS_PG[@]} -gt 0 ]; then
  chown postgres:postgres "$TMP"
fi

# --- PostgreSQL --------------------------------------------------------------------
say "Starting a throwaway PostgreSQL $PGVERSION"
printf '%s\n' "$DEMO_PASSWORD" >"$TMP/pwfile"
mkdir "$TMP/pgdata"
if [ ${#AS_PG[@]} -gt 0 ]; then
  chown postgres:postgres "$TMP/pwfile" "$TMP/pgdata"
fi
quietly "$TMP/initdb.log" as_pg "$PGBIN/initdb" -D "$TMP/pgdata" -U postgres \
  --auth-local=trust --auth-host=scram-sha-256 --pwfile="$TMP/pwfile" \
  --no-sync --encoding=UTF8 --locale=C
rm -f "$TMP/pwfile"

# start_postgres PORT: starts the server and waits until it takes connections.
# Returns 1 if it exits first (e.g. someone grabbed the port in the meantime).
start_postgres() {
  local port=$1 deadline=$((SECONDS + 30))
  # A simple command (no function, no subshell), so that $! is postgres
  # itself (setpriv execs it) and gets the shutdown signal.
  ${AS_PG[@]+"${AS_PG[@]}"} "$PGBIN/postgres" -D "$TMP/pgdata" -p "$port" -k "$TMP" \
    -c listen_addresses=127.0.0.1 -F -c synchronous_commit=off -c full_page_writes=off \
    >>"$TMP/postgres.log" 2>&1 &
  PG_PID=$!
  until pg_isready -q -h 127.0.0.1 -p "$port"; do
    if ! kill -0 "$PG_PID" 2>/dev/null; then
      wait "$PG_PID" 2>/dev/null || true
      PG_PID=''
      return 1
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "PostgreSQL did not become ready within 30 s"
    sleep 0.1
  done
}
for attempt in 1 2 3; do
  PGPORT=$(free_port)
  start_postgres "$PGPORT" && break
  [ "$attempt" -lt 3 ] || die "PostgreSQL did not start"
done
note "listening on 127.0.0.1:$PGPORT and $TMP/.s.PGSQL.$PGPORT (password auth over TCP)"

# Setup goes over the unix socket (trusted); Remora uses TCP and a password.
pg() { psql -X -q -v ON_ERROR_STOP=1 -h "$TMP" -p "$PGPORT" -U postgres "$@"; }

# --- S3 (versitygw) ------------------------------------------------------------------
say "Starting a throwaway S3 server (versitygw)"
mkdir "$TMP/s3"
start_versitygw() {
  local port=$1 deadline=$((SECONDS + 30))
  "$VERSITYGW" --port "127.0.0.1:$port" --access "$S3_ACCESS" --secret "$S3_SECRET" \
    --region "$S3_REGION" --health /health --quiet posix "$TMP/s3" \
    >>"$TMP/versitygw.log" 2>&1 &
  VGW_PID=$!
  until python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "http://127.0.0.1:$port/health" 2>/dev/null; do
    if ! kill -0 "$VGW_PID" 2>/dev/null; then
      wait "$VGW_PID" 2>/dev/null || true
      VGW_PID=''
      return 1
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "versitygw did not become ready within 30 s"
    sleep 0.1
  done
}
for attempt in 1 2 3; do
  S3PORT=$(free_port)
  start_versitygw "$S3PORT" && break
  [ "$attempt" -lt 3 ] || die "versitygw did not start"
done
note "listening on 127.0.0.1:$S3PORT, data in $TMP/s3"

# Create the bucket with a real S3 CreateBucket request (curl signs it with
# SigV4). Without a suitable curl, fall back on the posix backend's layout,
# where a bucket is a directory under the backend root.
if command -v curl >/dev/null 2>&1 && curl --help all 2>/dev/null | grep -q -- '--aws-sigv4'; then
  empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  quietly "$TMP/bucket.log" curl -fsS -X PUT --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --user "$S3_ACCESS:$S3_SECRET" -H "x-amz-content-sha256: $empty_sha256" \
    "http://127.0.0.1:$S3PORT/$BUCKET"
else
  mkdir "$TMP/s3/$BUCKET"
fi
note "created bucket '$BUCKET'"

# --- Sample data -------------------------------------------------------------------
say "Loading sample data into database 'shop'"
quietly "$TMP/setup.log" pg -d postgres -c 'CREATE DATABASE shop'
quietly "$TMP/setup.log" pgbench -i -s 5 -q -h "$TMP" -p "$PGPORT" -U postgres shop
quietly "$TMP/setup.log" pg -d shop <<'SQL'
CREATE TABLE orders (
  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer  text        NOT NULL,
  placed_at timestamptz NOT NULL,
  total     numeric(10,2) NOT NULL,
  items     jsonb       NOT NULL,
  receipt   bytea
);
INSERT INTO orders (customer, placed_at, total, items, receipt)
SELECT 'customer-' || (g % 97),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 minutes',
       round(((g * 7.31) % 1000)::numeric, 2),
       jsonb_build_object('sku', 'SKU-' || (g % 50), 'qty', g % 5 + 1,
                          'tags', jsonb_build_array('demo', CASE WHEN g % 2 = 0 THEN 'even' ELSE 'odd' END),
                          'note', 'naïve café ☕ #' || g),
       CASE WHEN g % 10 = 0 THEN NULL ELSE decode(md5(g::text) || md5((g + 1)::text), 'hex') END
FROM generate_series(1, 5000) AS g;
CREATE INDEX orders_customer_idx ON orders (customer);
ANALYZE;
SQL
note "pgbench tables (scale 5: 500,000 accounts) and 'orders' (5,000 rows with jsonb and bytea)"

# --- Configuration -------------------------------------------------------------------
say "Configuring Remora through environment variables"
export REMORA_STORAGE="s3://$BUCKET/demo?endpoint=127.0.0.1:$S3PORT&region=$S3_REGION&insecure=true"
export AWS_ACCESS_KEY_ID=$S3_ACCESS
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
export REMORA_DRIVER=postgres
export REMORA_DSN="postgres://postgres@127.0.0.1:$PGPORT/postgres"
export PGPASSWORD=$DEMO_PASSWORD
export REMORA_NAMESPACE=demo
export REMORA_WORKLOAD=db-0
for v in REMORA_STORAGE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY REMORA_DRIVER REMORA_DSN PGPASSWORD REMORA_NAMESPACE REMORA_WORKLOAD; do
  printf "    export %s='%s'\n" "$v" "${!v}"
done

# --- Backup, list, verify, restore ---------------------------------------------------
say "Making the key that signs every manifest (a bucket writer cannot forge a backup)"
run "$REMORA" keygen --out "$TMP/signing.pem"
export REMORA_SIGNING_KEY_FILE="$TMP/signing.pem"
printf "    export REMORA_SIGNING_KEY_FILE='%s'\n" "$REMORA_SIGNING_KEY_FILE"

say "Backing up"
run "$REMORA" backup

say "Listing backups"
run "$REMORA" list

say "Verifying the latest backup"
run "$REMORA" verify

say "Restoring database 'shop' as 'shop_restored'"
run "$REMORA" restore --latest --database shop --into shop_restored

# --- Compare ---------------------------------------------------------------------------
say "Comparing 'shop' with 'shop_restored'"
list_tables_sql="SELECT quote_ident(table_schema) || '.' || quote_ident(table_name)
  FROM information_schema.tables
  WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
  ORDER BY 1"
tables=$(pg -d shop -At -c "$list_tables_sql")
restored_tables=$(pg -d shop_restored -At -c "$list_tables_sql")
# fingerprint DB TABLE: "rows:hash", independent of row order.
fingerprint() {
  pg -d "$1" -At -c "SELECT count(*) || ':' || coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) FROM $2 t"
}
mismatch=0
printf '    %-28s %10s %10s  %s\n' TABLE ROWS RESTORED RESULT
while IFS= read -r table; do
  [ -n "$table" ] || continue
  orig=$(fingerprint shop "$table")
  if grep -qxF -- "$table" <<<"$restored_tables"; then
    copy=$(fingerprint shop_restored "$table")
  else
    copy='missing:'
  fi
  if [ "$orig" = "$copy" ]; then
    result="${GREEN}same${RESET}"
  else
    result="${RED}DIFFERENT${RESET}"
    mismatch=1
  fi
  printf '    %-28s %10s %10s  %s\n' "$table" "${orig%%:*}" "${copy%%:*}" "$result"
done <<<"$tables"
while IFS= read -r table; do
  [ -n "$table" ] || continue
  if ! grep -qxF -- "$table" <<<"$tables"; then
    printf '    %-28s %10s %10s  %s\n' "$table" - "?" "${RED}EXTRA${RESET}"
    mismatch=1
  fi
done <<<"$restored_tables"
[ -n "$tables" ] || die "database 'shop' has no tables"
if [ "$mismatch" -ne 0 ]; then
  SHOW_SERVER_LOGS=0 # the servers are fine; the data is not
  die "the restored database differs from the original"
fi

printf '\n%sDemo complete: the restored database matches the original.%s\n' "$GREEN$BOLD" "$RESET"
cat <<EOF

What to try next:
  - bin/remora --help, and bin/remora restore --help for --before TIME and full restores
  - back up your own database to a local folder:
      REMORA_DRIVER=postgres REMORA_DSN=postgres://user@host:5432/postgres \\
      REMORA_STORAGE=file:///tmp/remora-backups bin/remora backup
  - make test, to run every test against real servers
EOF
