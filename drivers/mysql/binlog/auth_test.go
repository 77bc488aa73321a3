package binlog_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"remora.dev/remora/drivers/mysql/binlog"
	"remora.dev/remora/internal/testenv"
)

// TestLogin logs in with each plugin MariaDB speaks, over TCP and the unix
// socket, and with wrong passwords.
func TestLogin(t *testing.T) {
	m := startServer(t)
	m.SQL(t, `INSTALL SONAME 'auth_ed25519';
		CREATE USER 'ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-Secret-42');
		CREATE USER 'native'@'%' IDENTIFIED BY 'native-Secret-42';
		CREATE USER 'nopass'@'%'`)
	tests := []struct {
		user, password string
		wantErr        bool
	}{
		{"remora", testenv.Canary, false},
		{"native", "native-Secret-42", false},
		{"ed", "ed-Secret-42", false},
		{"nopass", "", false},
		{"native", "wrong-Secret-43", true},
		{"ed", "wrong-Secret-44", true},
		{"nobody", "wrong-Secret-45", true},
	}
	for _, tt := range tests {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(tt.user+"/"+network+"/"+fmt.Sprint(tt.wantErr), func(t *testing.T) {
				cfg := binlog.Config{Network: network, Address: fmt.Sprintf("127.0.0.1:%d", m.Port), User: tt.user, Password: tt.password}
				if network == "unix" {
					cfg.Address = m.Socket
				}
				c, err := binlog.Dial(context.Background(), cfg)
				if tt.wantErr {
					var se *binlog.ServerError
					if !errors.As(err, &se) || se.Code != 1045 {
						t.Fatalf("err = %v, want access denied (1045)", err)
					}
					if tt.password != "" && strings.Contains(err.Error(), tt.password) {
						t.Fatalf("the error shows the password: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				rows, err := c.Query(context.Background(), "SELECT CURRENT_USER(), NULL")
				if err != nil {
					t.Fatal(err)
				}
				if want := [][]string{{tt.user + "@%", ""}}; fmt.Sprint(rows) != fmt.Sprint(want) {
					t.Fatalf("rows %q, want %q", rows, want)
				}
			})
		}
	}
}

// TestQueryInspectBinlogs: server errors are *ServerError, and Inspect and
// Binlogs describe the server as it is.
func TestQueryInspectBinlogs(t *testing.T) {
	m := startServer(t)
	m.SQL(t, "CREATE DATABASE test")
	writeLoad(t, m, 1)
	m.SQL(t, "FLUSH BINARY LOGS")
	c := dial(t, m, "tcp")
	_, err := c.Query(context.Background(), "SELEKT 1")
	var se *binlog.ServerError
	if !errors.As(err, &se) || se.Code != 1064 || se.State != "42000" {
		t.Fatalf("err = %#v, want a syntax error", err)
	}
	if rows, err := c.Query(context.Background(), "DO 1"); err != nil || rows != nil {
		t.Fatalf("DO 1: %q, %v", rows, err)
	}
	info, err := c.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	gtid := m.SQL(t, "SELECT @@gtid_binlog_pos")
	want := binlog.Info{Version: info.Version, MariaDB: true, ServerID: 1, LogBin: true, Format: "ROW", Checksum: "CRC32", GTIDPosition: gtid, GTIDMode: true}
	if info != want || !strings.Contains(info.Version, "MariaDB") || strings.HasPrefix(info.Version, "5.5.5-") {
		t.Errorf("info %+v, want %+v", info, want)
	}
	logs, err := c.Binlogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 2 {
		t.Fatalf("binlogs %+v, want two", logs)
	}
	for _, l := range logs {
		st, err := os.Stat(filepath.Join(m.Dir, l.Name))
		if err != nil || uint64(st.Size()) != l.Size {
			t.Errorf("%+v: on disk %v", l, err)
		}
	}
}

// TestVerifyFile accepts a file the server wrote and rejects damaged copies.
func TestVerifyFile(t *testing.T) {
	m := startServer(t)
	m.SQL(t, "CREATE DATABASE test")
	writeLoad(t, m, 1)
	m.SQL(t, "FLUSH BINARY LOGS")
	good, err := os.ReadFile(filepath.Join(m.Dir, "mysql-bin.000001"))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name    string
		file    []byte
		wantErr string
	}{
		{"intact", good, ""},
		// The server's own copy while it writes the file: not covered by
		// the checksum.
		{"in-use flag set", edit(func(b []byte) []byte { b[4+17] |= 1; return b }), ""},
		{"byte flipped in the last event", edit(func(b []byte) []byte { b[len(b)-10] ^= 0x40; return b }), "CRC32"},
		{"byte flipped in the format description", edit(func(b []byte) []byte { b[30] ^= 1; return b }), "CRC32"},
		{"end position changed", edit(func(b []byte) []byte { b[4+13]++; return b }), "ends at"},
		// MariaDB 11.4 and later write the events inside a transaction
		// without their end position.
		{"row events without their end position", edit(func(b []byte) []byte { return withoutPositions(t, b, 19, 23) }), ""},
		{"truncated in an event", good[:len(good)-3], "truncated"},
		{"truncated in a header", good[:len(good)-lastEventSize(t, good)+7], "truncated"},
		{"magic only", good[:4], "no event"},
		{"no magic", good[4:], "magic"},
		{"empty", nil, "magic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum, err := binlog.VerifyFile(bytes.NewReader(tt.file))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if sum.End != uint64(len(good)) || sum.Events < 5 || sum.First.IsZero() || sum.Last.Before(sum.First) ||
					sum.LastGTID != m.SQL(t, "SELECT @@gtid_binlog_pos") {
					t.Fatalf("summary %+v", sum)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one about %q", err, tt.wantErr)
			}
		})
	}
}

// withoutPositions zeroes the end position of every event of the types
// (19: table map, 23: write rows) and mends their CRC32, as a server
// writing them so would.
func withoutPositions(t *testing.T, b []byte, types ...byte) []byte {
	t.Helper()
	n := 0
	for at := 4; at+19 <= len(b); {
		size := int(binary.LittleEndian.Uint32(b[at+9:]))
		if slices.Contains(types, b[at+4]) {
			ev := b[at : at+size]
			binary.LittleEndian.PutUint32(ev[13:], 0)
			binary.LittleEndian.PutUint32(ev[size-4:], crc32.ChecksumIEEE(ev[:size-4]))
			n++
		}
		at += size
	}
	if n == 0 {
		t.Fatal("no event of those types")
	}
	return b
}

// lastEventSize walks the file's event sizes to the last one.
func lastEventSize(t *testing.T, b []byte) int {
	t.Helper()
	pos, size := 4, 0
	for pos < len(b) {
		size = int(b[pos+9]) | int(b[pos+10])<<8 | int(b[pos+11])<<16 | int(b[pos+12])<<24
		pos += size
	}
	return size
}
