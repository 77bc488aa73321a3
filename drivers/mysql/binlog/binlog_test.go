package binlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"remora.dev/remora/drivers/mysql/binlog"
	"remora.dev/remora/internal/testenv"
)

const replicaID = 77

func startServer(t *testing.T) *testenv.MariaDB {
	t.Helper()
	return testenv.StartMariaDBWith(t, testenv.MariaDBOptions{LogBin: true, Args: []string{"--max-allowed-packet=64M"}})
}

func dial(t *testing.T, m *testenv.MariaDB, network string) *binlog.Conn {
	t.Helper()
	cfg := binlog.Config{Network: "tcp", Address: fmt.Sprintf("127.0.0.1:%d", m.Port), User: "remora", Password: testenv.Canary}
	if network == "unix" {
		cfg.Network, cfg.Address = "unix", m.Socket
	}
	c, err := binlog.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// files rebuilds binlog files from streamed events the way an archive
// would: magic, then each event at its position. A file the stream started
// in the middle of holds the bytes from that offset (base).
type files struct {
	data  map[string][]byte
	base  map[string]uint64
	order []string
	last  binlog.Event
	all   []binlog.Event
	// crashed files were never closed: the in-use flag stays set on disk.
	crashed map[string]bool
}

func (f *files) add(t *testing.T, ev binlog.Event) {
	t.Helper()
	if f.data == nil {
		f.data, f.base = map[string][]byte{}, map[string]uint64{}
	}
	if _, ok := f.data[ev.File]; !ok {
		f.order = append(f.order, ev.File)
		f.base[ev.File] = ev.Pos
		if ev.NewFile {
			f.base[ev.File] = 0
		}
	}
	b := f.data[ev.File]
	if ev.NewFile {
		if len(b) != 0 || ev.Pos != 4 {
			t.Fatalf("new file %s at %d with %d bytes already", ev.File, ev.Pos, len(b))
		}
		b = append(b, binlog.Magic...)
	}
	if end := f.base[ev.File] + uint64(len(b)); end != ev.Pos {
		t.Fatalf("event at %s:%d, the file so far ends at %d", ev.File, ev.Pos, end)
	}
	f.data[ev.File] = append(b, ev.Raw...)
	f.last = ev
	f.all = append(f.all, ev)
}

// streamTo reads events until the stream is at the server's current end.
func streamTo(t *testing.T, s *binlog.Stream, m *testenv.MariaDB, f *files) {
	t.Helper()
	file, pos := masterStatus(t, m)
	for !(f.last.File == file && f.last.End() == pos && !f.last.EndOfFile) {
		ev, err := s.Next()
		if err != nil {
			t.Fatalf("after %s:%d: %v", f.last.File, f.last.End(), err)
		}
		f.add(t, ev)
	}
}

func masterStatus(t *testing.T, m *testenv.MariaDB) (string, uint64) {
	t.Helper()
	var file string
	var pos uint64
	if _, err := fmt.Sscan(m.SQL(t, "SHOW MASTER STATUS"), &file, &pos); err != nil {
		t.Fatal(err)
	}
	return file, pos
}

// sameAsDisk compares each rebuilt file with the server's (from the offset
// the stream started at in it) and verifies both.
func sameAsDisk(t *testing.T, m *testenv.MariaDB, f *files) {
	t.Helper()
	if len(f.order) == 0 {
		t.Fatal("no file streamed")
	}
	active, _ := masterStatus(t, m)
	inUse := f.crashed
	for _, name := range f.order {
		disk, err := os.ReadFile(filepath.Join(m.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := binlog.VerifyFile(bytes.NewReader(disk)); err != nil {
			t.Errorf("%s on disk: %v", name, err)
		}
		if (name == active || inUse[name]) && len(disk) > 21 {
			// The server sends the file's format description with the
			// in-use flag clear, as the file will hold it once closed.
			disk[21] &^= 1
		}
		got := f.data[name]
		disk = disk[f.base[name]:]
		if !bytes.Equal(got, disk) {
			t.Errorf("%s: streamed %d bytes differ from the %d on disk (first difference at %d)", name, len(got), len(disk), firstDiff(got, disk))
			continue
		}
		if f.base[name] == 0 {
			if _, err := binlog.VerifyFile(bytes.NewReader(got)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func writeLoad(t *testing.T, m *testenv.MariaDB, round int) {
	t.Helper()
	m.SQL(t, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS test.t (id INT PRIMARY KEY, v LONGBLOB);
		INSERT INTO test.t VALUES (%[1]d*10+1, 'a'), (%[1]d*10+2, 'b');
		BEGIN; UPDATE test.t SET v = 'c' WHERE id = %[1]d*10+1; DELETE FROM test.t WHERE id = %[1]d*10+2; COMMIT;
		CREATE TABLE test.r%[1]d (x INT)`, round))
}

// TestStreamMatchesServerFiles streams a write load with a row event larger
// than a packet and a rotation in the middle, and rebuilds the server's
// binlog files byte for byte.
func TestStreamMatchesServerFiles(t *testing.T) {
	m := startServer(t)
	m.SQL(t, "CREATE DATABASE IF NOT EXISTS test")
	writeLoad(t, m, 1)
	c := dial(t, m, "tcp")
	s, err := c.Dump(context.Background(), replicaID, "mysql-bin.000001", 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var f files
	streamTo(t, s, m, &f)
	// A row event of over 16 MiB travels as several packets.
	m.SQL(t, "INSERT INTO test.t VALUES (1000, REPEAT('x', 17*1024*1024))")
	m.SQL(t, "FLUSH BINARY LOGS")
	writeLoad(t, m, 2)
	streamTo(t, s, m, &f)
	if len(f.order) != 2 {
		t.Fatalf("streamed files %v, want two", f.order)
	}
	sameAsDisk(t, m, &f)
	checkTransactions(t, f.all)
	big := false
	for _, ev := range f.all {
		big = big || ev.End()-ev.Pos > 1<<24
	}
	if !big {
		t.Error("no event over 16 MiB streamed")
	}
	info, err := dial(t, m, "unix").Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.GTIDPosition != lastGTID(f.all) || info.GTIDPosition == "" {
		t.Errorf("server at GTID %q, stream's last %q", info.GTIDPosition, lastGTID(f.all))
	}
}

// checkTransactions: every GTID event opens a transaction that one Commit
// event closes before the next GTID.
func checkTransactions(t *testing.T, evs []binlog.Event) {
	t.Helper()
	open, n := false, 0
	for _, ev := range evs {
		if ev.GTID != "" {
			if open {
				t.Errorf("GTID %s at %s:%d while a transaction is open", ev.GTID, ev.File, ev.Pos)
			}
			open = true
			n++
		}
		if ev.Commit {
			if !open {
				t.Errorf("commit at %s:%d outside a transaction", ev.File, ev.Pos)
			}
			open = false
		}
	}
	if open || n == 0 {
		t.Errorf("%d transactions, the last open: %v", n, open)
	}
}

func lastGTID(evs []binlog.Event) string {
	g := ""
	for _, ev := range evs {
		if ev.GTID != "" {
			g = ev.GTID
		}
	}
	return g
}

func TestPurged(t *testing.T) {
	m := startServer(t)
	m.SQL(t, "FLUSH BINARY LOGS; FLUSH BINARY LOGS")
	purgeTo(t, m, "mysql-bin.000002")
	c := dial(t, m, "unix")
	_, err := c.Dump(context.Background(), replicaID, "mysql-bin.000001", 4, 0)
	if !errors.Is(err, binlog.ErrPurged) || !strings.Contains(err.Error(), "mysql-bin.000001") {
		t.Fatalf("err = %v, want ErrPurged naming the file", err)
	}
}

// purgeTo purges the files before file. The server keeps a file until its
// transactions are durable in the engine (the binlog checkpoint), so it
// repeats the statement until the file is gone.
func purgeTo(t *testing.T, m *testenv.MariaDB, file string) {
	t.Helper()
	for try := 0; !strings.HasPrefix(m.SQL(t, "PURGE BINARY LOGS TO '"+file+"'; SHOW BINARY LOGS"), file); try++ {
		if try == 1000 {
			t.Fatalf("the server keeps the files before %s", file)
		}
		m.SQL(t, "FLUSH ENGINE LOGS")
	}
}
