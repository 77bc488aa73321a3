package binlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Query runs one statement with the text protocol and returns its rows, each
// value as text; SQL NULL comes back as "" (indistinguishable from an empty
// string, which none of this package's queries need to tell apart). A
// statement without a result set returns nil rows. An error from the server
// is a *ServerError. When ctx ends the connection is closed.
func (c *Conn) Query(ctx context.Context, sql string) ([][]string, error) {
	stop := c.closeOn(ctx)
	rows, err := c.query(sql)
	if !stop() {
		return nil, fmt.Errorf("binlog: query: %w", ctx.Err())
	}
	return rows, err
}

func (c *Conn) query(sql string) ([][]string, error) {
	if err := c.command(append([]byte{comQuery}, sql...)); err != nil {
		return nil, err
	}
	p, err := c.readPacket()
	if err != nil {
		return nil, err
	}
	switch {
	case len(p) == 0:
		return nil, errors.New("binlog: empty response to a query")
	case p[0] == pktErr:
		return nil, parseError(p)
	case p[0] == pktOK:
		return nil, nil
	case p[0] == 0xfb:
		return nil, errors.New("binlog: the server asks for a local file; refused")
	}
	ncol, _, ok := readLenenc(p)
	if !ok || ncol == 0 {
		return nil, errors.New("binlog: bad column count in a result set")
	}
	for i := uint64(0); i < ncol; i++ { // column definitions: not needed
		if _, err := c.readPacket(); err != nil {
			return nil, err
		}
	}
	if p, err := c.readPacket(); err != nil {
		return nil, err
	} else if !isEOF(p) {
		return nil, errors.New("binlog: no EOF after the column definitions")
	}
	return c.readRows(int(ncol))
}

func (c *Conn) readRows(ncol int) ([][]string, error) {
	var rows [][]string
	for {
		p, err := c.readPacket()
		if err != nil {
			return nil, err
		}
		if isEOF(p) {
			return rows, nil
		}
		if len(p) > 0 && p[0] == pktErr {
			return nil, parseError(p)
		}
		row := make([]string, ncol)
		for i := range row {
			if len(p) > 0 && p[0] == 0xfb { // NULL
				p = p[1:]
				continue
			}
			n, size, ok := readLenenc(p)
			if !ok || uint64(len(p)-size) < n {
				return nil, errors.New("binlog: malformed row")
			}
			row[i] = string(p[size : size+int(n)])
			p = p[size+int(n):]
		}
		rows = append(rows, row)
	}
}

// readLenenc decodes a length-encoded integer: its value and its size.
func readLenenc(p []byte) (v uint64, size int, ok bool) {
	if len(p) == 0 {
		return 0, 0, false
	}
	switch p[0] {
	case 0xfc:
		size = 3
	case 0xfd:
		size = 4
	case 0xfe:
		size = 9
	default:
		return uint64(p[0]), 1, p[0] < 0xfb
	}
	if len(p) < size {
		return 0, 0, false
	}
	var b [8]byte
	copy(b[:], p[1:size])
	return binary.LittleEndian.Uint64(b[:]), size, true
}

func appendLenenc(b []byte, v uint64) []byte {
	switch {
	case v < 0xfb:
		return append(b, byte(v))
	case v < 1<<16:
		return binary.LittleEndian.AppendUint16(append(b, 0xfc), uint16(v))
	case v < 1<<24:
		return append(b, 0xfd, byte(v), byte(v>>8), byte(v>>16))
	}
	return binary.LittleEndian.AppendUint64(append(b, 0xfe), v)
}

// Info is what a replica needs to know about the server.
type Info struct {
	Version      string
	MariaDB      bool
	ServerID     uint32
	ServerUUID   string // MySQL only
	LogBin       bool
	Format       string // binlog_format: ROW, STATEMENT, MIXED
	Checksum     string // binlog_checksum: NONE or CRC32
	GTIDPosition string // MariaDB @@gtid_binlog_pos, MySQL @@gtid_executed
	GTIDMode     bool   // MySQL gtid_mode=ON; always true on MariaDB
}

// Inspect reads the server's replication settings.
func (c *Conn) Inspect(ctx context.Context) (Info, error) {
	info := Info{Version: c.version, MariaDB: c.mariadb, GTIDMode: c.mariadb}
	sql := "SELECT @@server_id, @@log_bin, @@binlog_format, @@binlog_checksum, @@gtid_binlog_pos"
	if !c.mariadb {
		sql = "SELECT @@server_id, @@log_bin, @@binlog_format, @@binlog_checksum, @@gtid_executed, @@server_uuid, @@gtid_mode"
	}
	rows, err := c.Query(ctx, sql)
	if err != nil {
		return info, fmt.Errorf("binlog: inspect the server: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) < 5 {
		return info, errors.New("binlog: inspect the server: unexpected result")
	}
	r := rows[0]
	id, err := strconv.ParseUint(r[0], 10, 32)
	if err != nil {
		return info, fmt.Errorf("binlog: server_id %q: %w", r[0], err)
	}
	info.ServerID = uint32(id)
	info.LogBin = r[1] == "1" || strings.EqualFold(r[1], "ON")
	info.Format, info.Checksum = strings.ToUpper(r[2]), strings.ToUpper(r[3])
	info.GTIDPosition = strings.ReplaceAll(r[4], "\n", "")
	if !c.mariadb {
		info.ServerUUID = r[5]
		info.GTIDMode = strings.EqualFold(r[6], "ON")
	}
	return info, nil
}

// File is one binary log file of the server.
type File struct {
	Name string
	Size uint64
}

// Binlogs lists the server's binary log files, oldest first (SHOW BINARY
// LOGS).
func (c *Conn) Binlogs(ctx context.Context) ([]File, error) {
	rows, err := c.Query(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("binlog: list binary logs: %w", err)
	}
	files := make([]File, 0, len(rows))
	for _, r := range rows {
		if len(r) < 2 {
			return nil, errors.New("binlog: SHOW BINARY LOGS: unexpected result")
		}
		size, err := strconv.ParseUint(r[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("binlog: SHOW BINARY LOGS: size %q of %s: %w", r[1], r[0], err)
		}
		files = append(files, File{Name: r[0], Size: size})
	}
	return files, nil
}
