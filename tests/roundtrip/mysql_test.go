package roundtrip

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/internal/testenv/clitest"
)

// seedMariaDB creates two databases with a view, a trigger, a routine, an
// event, awkward column types, and a user with a grant.
func seedMariaDB(t *testing.T, m *testenv.MariaDB) {
	t.Helper()
	m.SQL(t, `
CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE shop;
CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), price DECIMAL(10,2), data JSON,
  img BLOB, made DATETIME(3), note TEXT, name_upper VARCHAR(100));
CREATE TRIGGER items_upper BEFORE INSERT ON items FOR EACH ROW SET NEW.name_upper = UPPER(NEW.name);
INSERT INTO items (name, price, data, img, made, note)
  SELECT CONCAT('item ', seq, ' ✓ 😀'), seq / 7, JSON_OBJECT('k', seq, 'q', 'x''y'), UNHEX(CONCAT(MD5(seq), '00FF00')),
         '2026-01-01 00:00:00.123' + INTERVAL seq HOUR, IF(seq % 3 = 0, NULL, CONCAT('line1\nline2\t', seq))
  FROM seq_1_to_3000;
CREATE VIEW cheap AS SELECT id, name FROM items WHERE price < 10;
CREATE FUNCTION with_tax(p DECIMAL(10,2)) RETURNS DECIMAL(10,2) DETERMINISTIC RETURN p * 1.2;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM items WHERE id < 0;
CREATE DATABASE crm;
CREATE TABLE crm.contacts (id INT PRIMARY KEY, email VARCHAR(200) UNIQUE) ENGINE=InnoDB;
INSERT INTO crm.contacts SELECT seq, CONCAT('c', seq, '@example.com') FROM seq_1_to_500;
CREATE USER 'reporter'@'%' IDENTIFIED BY 'reporter-pw';
GRANT SELECT ON shop.* TO 'reporter'@'%';
`)
}

// mariadbState describes a database: table checksums, views, triggers,
// routines and events.
func mariadbState(t *testing.T, m *testenv.MariaDB, db string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tbl := range strings.Fields(m.SQL(t, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '"+db+"' AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1")) {
		row := strings.Split(m.SQL(t, "CHECKSUM TABLE `"+db+"`.`"+tbl+"` EXTENDED"), "\t")
		out["table "+tbl] = row[len(row)-1] + " rows " + m.SQL(t, "SELECT COUNT(*) FROM `"+db+"`.`"+tbl+"`")
	}
	out["views"] = m.SQL(t, "SELECT GROUP_CONCAT(TABLE_NAME ORDER BY 1) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '"+db+"'")
	out["triggers"] = m.SQL(t, "SELECT GROUP_CONCAT(CONCAT(TRIGGER_NAME, ':', ACTION_STATEMENT) ORDER BY 1) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '"+db+"'")
	out["routines"] = m.SQL(t, "SELECT GROUP_CONCAT(CONCAT(ROUTINE_NAME, ':', ROUTINE_DEFINITION) ORDER BY 1) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '"+db+"'")
	out["events"] = m.SQL(t, "SELECT GROUP_CONCAT(EVENT_NAME ORDER BY 1) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '"+db+"'")
	out["collation"] = m.SQL(t, "SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '"+db+"'")
	return out
}

// TestMariaDBRoundTrip backs up two databases to S3 and to a directory and
// restores each under a new name; then a full restore brings back a dropped
// database and a dropped user with its grant.
func TestMariaDBRoundTrip(t *testing.T) {
	t.Parallel()
	m := testenv.StartMariaDB(t)
	s3 := testenv.StartS3(t)
	s3.MakeBucket(t, "backups")
	seedMariaDB(t, m)
	want := map[string]map[string]string{"shop": mariadbState(t, m, "shop"), "crm": mariadbState(t, m, "crm")}

	for _, tc := range []struct {
		name, storage string
		env           []string
	}{
		{"s3", s3.URL("backups", "mdb"), s3.Env()},
		{"file", "file://" + t.TempDir(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append(tc.env, "REMORA_STORAGE="+tc.storage, "REMORA_DRIVER=mysql", "REMORA_DSN="+m.DSN(),
				"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=mariadb-0")
			remora.Must(t, env, "backup")
			items := clitest.List(t, remora, env)
			if len(items) != 1 || strings.Join(items[0].Databases, ",") != "crm,shop" {
				t.Fatalf("list: %+v", items)
			}
			if !strings.Contains(items[0].Manifest.ServerVersion, "MariaDB") {
				t.Errorf("server version %q", items[0].Manifest.ServerVersion)
			}
			remora.Must(t, env, "verify")
			for _, db := range []string{"shop", "crm"} {
				into := db + "_" + tc.name
				remora.Must(t, env, "restore", "--latest", "--database", db, "--into", into)
				got := mariadbState(t, m, into)
				for k, v := range want[db] {
					if got[k] != v {
						t.Errorf("%s -> %s: %s: got %q, want %q", db, into, k, got[k], v)
					}
				}
			}
			// The trigger works in the copy.
			m.SQL(t, "INSERT INTO shop_"+tc.name+".items (name) VALUES ('new')")
			if got := m.SQL(t, "SELECT name_upper FROM shop_"+tc.name+".items WHERE name = 'new'"); got != "NEW" {
				t.Errorf("trigger in the copy: %q", got)
			}
			m.SQL(t, "DROP DATABASE shop_"+tc.name+"; DROP DATABASE crm_"+tc.name)
		})
	}

	// Full restore: the dropped database and user come back.
	env := append(s3.Env(), "REMORA_STORAGE="+s3.URL("backups", "mdb"), "REMORA_DRIVER=mysql", "REMORA_DSN="+m.DSN(),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=mariadb-0")
	m.SQL(t, "DROP DATABASE crm; DROP USER 'reporter'@'%'; DELETE FROM shop.items WHERE id > 100")
	if r := remora.Run(t, env, "restore", "--latest"); r.Code == 0 || !strings.Contains(r.Stderr, "--yes") {
		t.Fatalf("full restore without --yes: %s", r)
	}
	remora.Must(t, env, "restore", "--latest", "--yes")
	for _, db := range []string{"shop", "crm"} {
		got := mariadbState(t, m, db)
		for k, v := range want[db] {
			if got[k] != v {
				t.Errorf("full restore %s: %s: got %q, want %q", db, k, got[k], v)
			}
		}
	}
	if g := m.SQL(t, "SHOW GRANTS FOR 'reporter'@'%'"); !strings.Contains(g, "GRANT SELECT ON `shop`.* TO `reporter`@`%`") {
		t.Errorf("grants after full restore: %s", g)
	}
	if out, err := exec.Command("mariadb", "--no-defaults", "-h127.0.0.1", "-P"+strconv.Itoa(m.Port), "-ureporter", "-preporter-pw", "-e", "SELECT COUNT(*) FROM shop.items").CombinedOutput(); err != nil {
		t.Errorf("the restored user cannot log in with its password: %v\n%s", err, out)
	}
}

// TestMariaDBStandardTools: an encrypted backup restores with
// age -d | zstd -d | mariadb alone.
func TestMariaDBStandardTools(t *testing.T) {
	t.Parallel()
	ageBin, err1 := exec.LookPath("age")
	zstd, err2 := exec.LookPath("zstd")
	if err1 != nil || err2 != nil {
		testenv.Missing(t, "age and zstd", "apt-get install age zstd")
	}
	m := testenv.StartMariaDB(t)
	seedMariaDB(t, m)
	want := mariadbState(t, m, "shop")
	id, _ := age.GenerateX25519Identity()
	key := filepath.Join(t.TempDir(), "key.txt")
	os.WriteFile(key, []byte(id.String()+"\n"), 0o600)
	dir := t.TempDir()
	env := []string{"REMORA_STORAGE=file://" + dir, "REMORA_DRIVER=mysql", "REMORA_DSN=" + m.DSN(),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=mariadb-0", "REMORA_ENCRYPT_TO=" + id.Recipient().String()}
	remora.Must(t, env, "backup")
	bdir := filepath.Join(dir, "shop/mariadb-0/mysql", clitest.List(t, remora, env)[0].ID)
	m.SQL(t, "CREATE DATABASE shop_tools CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c",
		`"$AGE" -d -i "$KEY" databases/shop.sql.zst.age | "$ZSTD" -dc | mariadb --no-defaults --socket="$SOCK" -uroot shop_tools`)
	cmd.Dir = bdir
	cmd.Env = append(os.Environ(), "AGE="+ageBin, "ZSTD="+zstd, "KEY="+key, "SOCK="+m.Socket)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("age -d | zstd -d | mariadb: %v\n%s", err, out)
	}
	got := mariadbState(t, m, "shop_tools")
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}

func TestMariaDBBadInput(t *testing.T) {
	t.Parallel()
	m := testenv.StartMariaDB(t)
	env := []string{"REMORA_STORAGE=file://" + t.TempDir(), "REMORA_DRIVER=mysql", "REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=mariadb-0"}
	for _, tc := range []struct {
		dsn, databases string
		want           string
	}{
		{"mysql://remora:wrong-" + testenv.Canary + "@127.0.0.1:" + strconv.Itoa(m.Port) + "/", "", `login as "remora" refused`},
		{"mysql://remora:" + testenv.Canary + "@127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) + "/", "", "cannot connect"},
		{m.DSN(), "nosuch", `database "nosuch" not found`},
		{"mysql://remora@127.0.0.1/?sslmode=on", "", `unknown DSN option "sslmode"`},
	} {
		r := remora.Run(t, append(env, "REMORA_DSN="+tc.dsn, "REMORA_DATABASES="+tc.databases), "backup")
		if r.Code == 0 || !strings.Contains(r.Stderr, tc.want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("%s: want one line with %q, got %s", tc.dsn, tc.want, r)
		}
	}
	if items := clitest.List(t, remora, env); len(items) != 0 {
		t.Fatalf("failed backups are listed: %+v", items)
	}
}

// TestDumpArgs: allowed extra flags reach the dump tool; a refused one is a
// clear error and nothing is dumped.
func TestDumpArgs(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	testenv.SeedOdd(t, pg, "odd")
	m := testenv.StartMariaDB(t)
	seedMariaDB(t, m)
	store := t.TempDir()
	pgEnv := []string{"REMORA_STORAGE=file://" + store, "REMORA_DRIVER=postgres", "REMORA_DSN=" + pg.DSN("postgres"),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=db-0", "REMORA_DATABASES=odd"}
	myEnv := []string{"REMORA_STORAGE=file://" + store, "REMORA_DRIVER=mysql", "REMORA_DSN=" + m.DSN(),
		"REMORA_NAMESPACE=shop", "REMORA_WORKLOAD=mariadb-0", "REMORA_DATABASES=shop"}
	victim := filepath.Join(t.TempDir(), "written")
	for _, tc := range []struct {
		env  []string
		args string
		want string
	}{
		{pgEnv, "--file=" + victim, `"--file=` + victim + `" is not allowed for pg_dump`},
		{pgEnv, "-f " + victim, `"-f" is not allowed`},
		{pgEnv, "--host=elsewhere", `"--host=elsewhere" is not allowed`},
		{pgEnv, "--exclude-table=x; touch " + victim, "more than one command"},
		{pgEnv, "--exclude-table=$HOME", "variables"},
		{myEnv, "--result-file=" + victim, `"--result-file=` + victim + `" is not allowed for mysqldump`},
		{myEnv, "--compact", `"--compact" is not allowed`},
		{myEnv, "otherdb", "not a flag"},
	} {
		r := remora.Run(t, append(tc.env, "REMORA_DUMP_ARGS="+tc.args), "backup")
		if r.Code != exitUsage || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("--dump-args %q: want exit 2 and %q, got %s", tc.args, tc.want, r)
		}
	}
	if _, err := os.Stat(victim); err == nil {
		t.Fatal("a refused flag wrote a file")
	}
	for _, env := range [][]string{pgEnv, myEnv} {
		if items := clitest.List(t, remora, env); len(items) != 0 {
			t.Fatalf("refused dump args left backups: %+v", items)
		}
	}

	// Allowed flags work.
	remora.Must(t, append(pgEnv, "REMORA_DUMP_ARGS=--exclude-table='odd_view' --no-owner"), "backup")
	remora.Must(t, pgEnv, "restore", "--latest", "--into", "odd_args")
	if n := pg.Psql(t, "odd_args", "SELECT count(*) FROM pg_views WHERE viewname = 'odd_view'"); n != "0" {
		t.Error("--exclude-table did not reach pg_dump")
	}
	remora.Must(t, append(myEnv, "REMORA_DUMP_ARGS=--ignore-table-data=shop.items"), "backup")
	remora.Must(t, myEnv, "restore", "--latest", "--into", "shop_args")
	if n := m.SQL(t, "SELECT COUNT(*) FROM shop_args.items"); n != "0" {
		t.Error("--ignore-table-data did not reach mariadb-dump")
	}
}
