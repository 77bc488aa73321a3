package binlog

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"
)

// Magic starts every binary log file; the first event follows at offset 4.
var Magic = []byte{0xfe, 'b', 'i', 'n'}

// headerLen is the length of a v4 event header: timestamp 4, type 1,
// server id 4, event size 4, end position (log_pos) 4, flags 2.
const headerLen = 19

// Event types this package looks at.
const (
	typeQuery              = 2
	typeStop               = 3
	typeRotate             = 4
	typeFormatDescription  = 15
	typeXID                = 16
	typeHeartbeat          = 27
	typeGTID               = 33 // MySQL
	typeXAPrepare          = 38
	typeTransactionPayload = 40 // MySQL: a whole compressed transaction
	typeHeartbeatV2        = 41 // MySQL
	typeMariaGTID          = 162
)

// flagArtificial marks an event the server made up for the replica (the
// rotate at the start of a dump), which is in no file.
const flagArtificial = 0x20

// header is the decoded v4 event header.
type header struct {
	timestamp uint32
	typ       byte
	serverID  uint32
	size      uint32
	logPos    uint32 // where the event ends in its file; 0 when in none
	flags     uint16
}

func parseHeader(b []byte) header {
	return header{
		timestamp: binary.LittleEndian.Uint32(b[0:]),
		typ:       b[4],
		serverID:  binary.LittleEndian.Uint32(b[5:]),
		size:      binary.LittleEndian.Uint32(b[9:]),
		logPos:    binary.LittleEndian.Uint32(b[13:]),
		flags:     binary.LittleEndian.Uint16(b[17:]),
	}
}

// flagInUse marks the format description of a file the server is still
// writing; the server clears it when it closes the file, and in the copy it
// sends to a replica. The checksum is computed without it.
const flagInUse = 0x1

// crcOK reports whether the event's last 4 bytes are the CRC32 of the rest.
func crcOK(raw []byte) bool {
	if len(raw) < headerLen+4 {
		return false
	}
	n := len(raw) - 4
	want := binary.LittleEndian.Uint32(raw[n:])
	if raw[4] == typeFormatDescription && raw[17]&flagInUse != 0 {
		crc := crc32.Update(0, crc32.IEEETable, raw[:17])
		crc = crc32.Update(crc, crc32.IEEETable, []byte{raw[17] &^ flagInUse})
		return crc32.Update(crc, crc32.IEEETable, raw[18:n]) == want
	}
	return crc32.ChecksumIEEE(raw[:n]) == want
}

// fdeChecksum reads the checksum algorithm of a format description event:
// the byte before the last four (which hold the checksum, or zeros).
// Servers older than the checksum feature (5.6.1, MariaDB 5.3) have none.
func fdeChecksum(raw []byte) (crc bool, err error) {
	// binlog version 2, server version 50, timestamp 4, header length 1,
	// one post-header length per event type, algorithm 1, checksum 4.
	if len(raw) < headerLen+2+50+4+1+5 {
		return false, fmt.Errorf("binlog: format description event of %d bytes is too short", len(raw))
	}
	switch alg := raw[len(raw)-5]; alg {
	case 0:
		return false, nil
	case 1:
		return true, nil
	default:
		return false, fmt.Errorf("binlog: unknown checksum algorithm %d", alg)
	}
}

// rotateTarget decodes a rotate event's body (without checksum): the next
// file and position.
func rotateTarget(body []byte) (string, uint64, error) {
	if len(body) < 8+1 {
		return "", 0, fmt.Errorf("binlog: rotate event body of %d bytes is too short", len(body))
	}
	return string(body[8:]), binary.LittleEndian.Uint64(body), nil
}

// gtidOf decodes a GTID event: MariaDB's "domain-server-seq" (standalone
// when no COMMIT or XID follows: the group is one statement), MySQL's
// "uuid:gno".
func gtidOf(h header, body []byte) (gtid string, standalone bool) {
	switch h.typ {
	case typeMariaGTID:
		if len(body) < 13 {
			return "", false
		}
		seq := binary.LittleEndian.Uint64(body[0:])
		domain := binary.LittleEndian.Uint32(body[8:])
		return fmt.Sprintf("%d-%d-%d", domain, h.serverID, seq), body[12]&1 != 0
	case typeGTID:
		if len(body) < 1+16+8 {
			return "", false
		}
		return mysqlUUID(body[1:17]) + ":" + fmt.Sprint(int64(binary.LittleEndian.Uint64(body[17:]))), false
	}
	return "", false
}

func mysqlUUID(b []byte) string {
	s := hex.EncodeToString(b)
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// queryText is the statement of a query event: after the post-header
// (thread id 4, exec time 4, db length 1, error code 2, status length 2),
// the status variables and the NUL-terminated database name.
func queryText(body []byte) string {
	if len(body) < 13 {
		return ""
	}
	dbLen := int(body[8])
	start := 13 + int(binary.LittleEndian.Uint16(body[11:])) + dbLen + 1
	if start > len(body) {
		return ""
	}
	return string(body[start:])
}

// txnTracker follows transaction boundaries through the events of a file.
type txnTracker struct{ inTxn bool }

// observe reports whether the event ends a transaction (or is a statement
// outside one, such as DDL).
func (t *txnTracker) observe(h header, body []byte) (gtid string, commit bool) {
	switch h.typ {
	case typeMariaGTID, typeGTID:
		gtid, standalone := gtidOf(h, body)
		// A MariaDB GTID event stands for BEGIN unless standalone; MySQL
		// writes an explicit BEGIN query.
		t.inTxn = h.typ == typeMariaGTID && !standalone
		return gtid, false
	case typeXID, typeXAPrepare, typeTransactionPayload:
		t.inTxn = false
		return "", true
	case typeQuery:
		q := strings.ToUpper(strings.TrimSpace(queryText(body)))
		if q == "BEGIN" || strings.HasPrefix(q, "XA START") || strings.HasPrefix(q, "XA BEGIN") {
			t.inTxn = true
			return "", false
		}
		if !t.inTxn {
			return "", true
		}
		if q == "COMMIT" || q == "ROLLBACK" || strings.HasPrefix(q, "XA ") && !strings.HasPrefix(q, "XA END") {
			t.inTxn = false
			return "", true
		}
	}
	return "", false
}

// body is the event's body without header and checksum.
func body(raw []byte, crc bool) []byte {
	end := len(raw)
	if crc && end >= headerLen+4 {
		end -= 4
	}
	return raw[headerLen:end]
}
