package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"remora.dev/remora/internal/testenv"
)

// seedMariaDB fills database db with about mib MiB of dump: half a table of
// pgbench-like accounts with a blank filler, half rows of realistic, poorly
// compressible data.
func seedMariaDB(b *testing.B, m *testenv.MariaDB, db string, mib int) {
	b.Helper()
	rows := mib / 2 << 20 / 100 // about 100 bytes of dump per account
	m.SQL(b, fmt.Sprintf(`CREATE DATABASE %[1]s;
USE %[1]s;
CREATE TABLE %[1]s.accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler varchar(84)) ENGINE=InnoDB;
INSERT INTO %[1]s.accounts SELECT seq, seq DIV 100000, 0, REPEAT(' ', 84) FROM seq_1_to_%[2]d;
CREATE TABLE %[1]s.docs (id bigint AUTO_INCREMENT PRIMARY KEY, title text, body text, bin varbinary(64)) ENGINE=InnoDB;`, db, rows))
	f := filepath.Join(b.TempDir(), "docs.tsv")
	w, err := os.Create(f)
	if err != nil {
		b.Fatal(err)
	}
	if err := writeDocs(w, mib/2<<20, ""); err != nil {
		b.Fatal(err)
	}
	w.Close()
	load := m.Command("mariadb", "--local-infile=1", "-e", fmt.Sprintf(
		`LOAD DATA LOCAL INFILE '%s' INTO TABLE %s.docs FIELDS TERMINATED BY '\t' ESCAPED BY '' (title, body, @b) SET bin = UNHEX(@b)`, f, db))
	if out, err := load.CombinedOutput(); err != nil {
		b.Fatalf("load docs: %v\n%s", err, out)
	}
	os.Remove(f)
	m.SQL(b, fmt.Sprintf("ANALYZE TABLE %[1]s.accounts, %[1]s.docs", db))
}

// BenchmarkMariaDB: remora backup beside mariadb-dump > /dev/null with the
// options Remora gives it (the limit) and the operator's shell pipeline, all
// over TCP as the same user, to the same S3 server.
func BenchmarkMariaDB(b *testing.B) {
	mib, n := sizeMiB()*2/5, rounds() // about 1 GiB of data by default
	m := testenv.StartMariaDB(b)
	s3 := testenv.StartS3(b)
	s3.MakeBucket(b, "bench")
	seedMariaDB(b, m, "bench", mib)
	size := m.SQL(b, "SELECT CONCAT(ROUND(SUM(data_length + index_length) / 1048576), ' MiB') FROM information_schema.tables WHERE table_schema = 'bench'")

	remora := remoraBinary(b)
	env := append(baseEnv(), s3.Env()...)
	env = append(env, "REMORA_DRIVER=mysql", "REMORA_DSN="+m.DSN(), "REMORA_DATABASES=bench",
		"REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=db-0", "REMORA_LOG_LEVEL=warn")
	shellEnv := append(append(baseEnv(), "MYSQL_PWD="+testenv.Canary), rcloneEnv(s3)...)
	dump := fmt.Sprintf("mariadb-dump --no-defaults --user=remora --default-character-set=utf8mb4 --protocol=TCP --host=127.0.0.1 --port=%s "+
		"--single-transaction --routines --triggers --events --hex-blob --add-drop-table --comments bench", strconv.Itoa(m.Port))
	vars := map[string]string{"dump": dump}

	b.ResetTimer()
	race(b, fmt.Sprintf("MariaDB backup, database of %s", size), n, s3, "bench", dumpTriple("mariadb-dump", ".sql.zst", remora, env, shellEnv, s3, vars))
	b.StopTimer()
}
