package mysql

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A dump of a server with binary logging records where in the binary log
// its snapshot was taken (--master-data=2, --source-data=2 on MySQL 8.0.26
// and later), as a commented CHANGE MASTER statement. Point-in-time
// recovery replays the binary log from exactly there: every transaction
// before it is in the dump, every one after it is not.

// Meta keys of a database object's binary log position.
const (
	MetaBinlogFile = "binlog.file" // mysql-bin.000042
	MetaBinlogPos  = "binlog.pos"  // the byte offset in it
	MetaBinlogGTID = "binlog.gtid" // MariaDB's gtid_slave_pos or MySQL's gtid_executed then, when the dump said
	MetaBinlogTime = "binlog.time" // the server's clock after the snapshot (RFC 3339)
)

// BinlogPosition is a place in a server's binary log.
type BinlogPosition struct {
	File string
	Pos  uint64
	GTID string
	Time time.Time // the server's clock after the snapshot; zero if not recorded
}

// PositionOf reads a database object's recorded position; ok is false when
// the dump recorded none (binary logging was off, or an older Remora).
func PositionOf(meta map[string]string) (BinlogPosition, bool, error) {
	file, pos := meta[MetaBinlogFile], meta[MetaBinlogPos]
	if file == "" && pos == "" {
		return BinlogPosition{}, false, nil
	}
	n, err := strconv.ParseUint(pos, 10, 64)
	if err != nil || !binlogName.MatchString(file) || n < 4 {
		return BinlogPosition{}, false, fmt.Errorf("mysql: the recorded binary log position %q %q is not one", file, pos)
	}
	p := BinlogPosition{File: file, Pos: n, GTID: meta[MetaBinlogGTID]}
	if t := meta[MetaBinlogTime]; t != "" {
		if p.Time, err = time.Parse(time.RFC3339Nano, t); err != nil {
			return BinlogPosition{}, false, fmt.Errorf("mysql: the recorded snapshot time %q is not one", t)
		}
	}
	return p, true, nil
}

// binlogName is a binary log file's name: a base name and a number.
var binlogName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}\.[0-9]{6,10}$`)

var (
	changeMaster = regexp.MustCompile(`^-- CHANGE (?:MASTER|REPLICATION SOURCE) TO (?:MASTER|SOURCE)_LOG_FILE='([^']+)', (?:MASTER|SOURCE)_LOG_POS=([0-9]+);`)
	gtidComment  = regexp.MustCompile(`^-- SET (?:GLOBAL gtid_slave_pos|@@GLOBAL\.GTID_PURGED)=(?:/\*!80000 '\+'\*/ )?'([^']*)';`)
)

// positionScanner finds the recorded position in a dump as it streams by.
// It looks only at comment lines, so it costs little on a large dump.
type positionScanner struct {
	line    []byte
	comment bool // the current line may be one we want
	start   bool // at the start of a line
	pos     BinlogPosition
	found   bool
}

func newPositionScanner() *positionScanner { return &positionScanner{start: true} }

// maxCommentLine bounds a comment line the scanner keeps.
const maxCommentLine = 512

func (p *positionScanner) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		if p.start {
			p.start, p.comment, p.line = false, true, p.line[:0]
		}
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if p.comment {
			p.line = append(p.line, chunk...)
			if len(p.line) >= 3 && !bytes.HasPrefix(p.line, []byte("-- ")) || len(p.line) > maxCommentLine {
				p.comment = false
			}
		}
		if i < 0 {
			break
		}
		if p.comment {
			p.take(p.line)
		}
		p.start = true
		b = b[i+1:]
	}
	return n, nil
}

// take reads a complete comment line.
func (p *positionScanner) take(line []byte) {
	if m := changeMaster.FindSubmatch(line); m != nil && !p.found {
		if n, err := strconv.ParseUint(string(m[2]), 10, 64); err == nil {
			p.pos.File, p.pos.Pos, p.found = string(m[1]), n, true
		}
		return
	}
	if m := gtidComment.FindSubmatch(line); m != nil {
		p.pos.GTID = string(m[1])
	}
}

// meta is the position for the object's Meta, or nil.
func (p *positionScanner) meta() map[string]string {
	if !p.found {
		return nil
	}
	m := map[string]string{MetaBinlogFile: p.pos.File, MetaBinlogPos: strconv.FormatUint(p.pos.Pos, 10)}
	if p.pos.GTID != "" {
		m[MetaBinlogGTID] = p.pos.GTID
	}
	return m
}

// positionFlags make the dump tool record its position: MySQL's own
// mysqldump calls it --source-data from 8.0.26 on (and dropped
// --master-data in 8.4); MariaDB's tools call it --master-data and add
// the GTID position with --gtid.
func positionFlags(toolVersion string) []string {
	if strings.Contains(toolVersion, "MariaDB") {
		return []string{"--master-data=2", "--gtid"}
	}
	if m := mysqlToolVersion.FindStringSubmatch(toolVersion); m != nil {
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		patch, _ := strconv.Atoi(m[3])
		if major > 8 || major == 8 && (minor > 0 || patch >= 26) {
			return []string{"--source-data=2"}
		}
	}
	return []string{"--master-data=2"}
}

// mysqlToolVersion finds the server version in "mysqldump  Ver 8.0.36 for
// Linux" or "Ver 10.13 Distrib 5.7.44".
var mysqlToolVersion = regexp.MustCompile(`(?:Ver|Distrib) ([0-9]+)\.([0-9]+)\.([0-9]+)`)

// serverNow is the server's clock.
func (d *Driver) serverNow(ctx context.Context) (time.Time, error) {
	s, err := d.inspect(ctx)
	if err != nil {
		return time.Time{}, err
	}
	rows, err := d.query(ctx, s.client, "SELECT UNIX_TIMESTAMP(NOW(6))")
	if err != nil {
		return time.Time{}, err
	}
	if len(rows) != 1 || len(rows[0]) != 1 {
		return time.Time{}, fmt.Errorf("mysql %s: cannot read the server's clock", d.where)
	}
	f, err := strconv.ParseFloat(rows[0][0], 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("mysql %s: cannot read the server's clock: %q", d.where, rows[0][0])
	}
	return time.Unix(0, int64(f*1e9)), nil
}
