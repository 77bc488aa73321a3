package mysql

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestPositionScanner: the position is read from the comments the dump
// tools write, however the stream is cut into writes, and nothing else in
// a dump is taken for it.
func TestPositionScanner(t *testing.T) {
	for _, tc := range []struct {
		name, dump string
		want       map[string]string
	}{
		{"mariadb", "-- MariaDB dump\n-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n\n-- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000001', MASTER_LOG_POS=1327;\n\nCREATE TABLE `t` (id int);\n-- SET GLOBAL gtid_slave_pos='0-1-4';\n-- Dump completed\n",
			map[string]string{MetaBinlogFile: "mysql-bin.000001", MetaBinlogPos: "1327", MetaBinlogGTID: "0-1-4"}},
		{"mysql 8", "-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='binlog.000002', SOURCE_LOG_POS=157;\n",
			map[string]string{MetaBinlogFile: "binlog.000002", MetaBinlogPos: "157"}},
		{"none", "-- MariaDB dump\nINSERT INTO `t` VALUES ('-- CHANGE MASTER TO MASTER_LOG_FILE=''x.000001'', MASTER_LOG_POS=4;');\n", nil},
		{"in data", "INSERT INTO `t` VALUES (1);\n  -- CHANGE MASTER TO MASTER_LOG_FILE='mysql-bin.000009', MASTER_LOG_POS=9;\n", nil},
		{"first wins", "-- CHANGE MASTER TO MASTER_LOG_FILE='a.000001', MASTER_LOG_POS=10;\n-- CHANGE MASTER TO MASTER_LOG_FILE='a.000002', MASTER_LOG_POS=20;\n",
			map[string]string{MetaBinlogFile: "a.000001", MetaBinlogPos: "10"}},
		{"long comment", "-- " + strings.Repeat("x", 2000) + "\n-- CHANGE MASTER TO MASTER_LOG_FILE='m.000003', MASTER_LOG_POS=44;\n",
			map[string]string{MetaBinlogFile: "m.000003", MetaBinlogPos: "44"}},
	} {
		for _, step := range []int{1, 7, 4096} {
			p := newPositionScanner()
			for i := 0; i < len(tc.dump); i += step {
				p.Write([]byte(tc.dump[i:min(i+step, len(tc.dump))]))
			}
			if got := p.meta(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s (writes of %d): %v, want %v", tc.name, step, got, tc.want)
			}
		}
	}
}

func TestPositionFlags(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    string
	}{
		{"mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)", "--master-data=2 --gtid"},
		{"mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", "--source-data=2"},
		{"mysqldump  Ver 8.0.25 for Linux on x86_64", "--master-data=2"},
		{"mysqldump  Ver 8.4.3 for Linux on x86_64", "--source-data=2"},
		{"mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)", "--master-data=2"},
		{"unknown", "--master-data=2"},
	} {
		if got := strings.Join(positionFlags(tc.version), " "); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.version, got, tc.want)
		}
	}
}

func TestPositionOf(t *testing.T) {
	if _, ok, err := PositionOf(map[string]string{}); ok || err != nil {
		t.Fatal("no position")
	}
	p, ok, err := PositionOf(map[string]string{MetaBinlogFile: "mysql-bin.000002", MetaBinlogPos: "330"})
	if !ok || err != nil || p.File != "mysql-bin.000002" || p.Pos != 330 {
		t.Fatal(p, ok, err)
	}
	p, _, err = PositionOf(map[string]string{MetaBinlogFile: "mysql-bin.000002", MetaBinlogPos: "330", MetaBinlogTime: "2026-11-30T12:00:01.5Z"})
	if err != nil || !p.Time.Equal(time.Date(2026, 11, 30, 12, 0, 1, 5e8, time.UTC)) {
		t.Fatal(p, err)
	}
	for _, bad := range []map[string]string{{MetaBinlogFile: "m.000001", MetaBinlogPos: "9", MetaBinlogTime: "noon"}, {MetaBinlogFile: "../x.000001", MetaBinlogPos: "9"}, {MetaBinlogFile: "m.000001", MetaBinlogPos: "x"}, {MetaBinlogFile: "m.000001", MetaBinlogPos: "2"}} {
		if _, _, err := PositionOf(bad); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}
