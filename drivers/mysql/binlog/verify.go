package binlog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
)

// Summary describes a binary log file VerifyFile walked.
type Summary struct {
	Events      int
	First, Last time.Time // the first and last event timestamps (0 ones skipped)
	LastGTID    string
	End         uint64 // the file's length: where the next event would start
}

// VerifyFile walks a stored binary log file: the magic, a format description
// first, each event starting where the previous one ended (its log_pos), and
// the CRC32 of every event when the format description says CRC32. A file
// cut in the middle of an event fails.
func VerifyFile(r io.Reader) (Summary, error) {
	var sum Summary
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(br, magic); err != nil || !bytes.Equal(magic, Magic) {
		return sum, errors.New("binlog: not a binary log file (no magic)")
	}
	sum.End = uint64(len(Magic))
	crc := false
	var txn txnTracker
	for {
		raw, err := readEvent(br, sum.End)
		if err == io.EOF {
			if sum.Events == 0 {
				return sum, errors.New("binlog: the file holds no event")
			}
			return sum, nil
		}
		if err != nil {
			return sum, err
		}
		h := parseHeader(raw)
		if sum.Events == 0 {
			if h.typ != typeFormatDescription {
				return sum, fmt.Errorf("binlog: the first event is of type %d, not a format description", h.typ)
			}
			if crc, err = fdeChecksum(raw); err != nil {
				return sum, err
			}
		}
		if err := checkEvent(h, raw, sum.End, crc); err != nil {
			return sum, err
		}
		if gtid, _ := txn.observe(h, body(raw, crc)); gtid != "" {
			sum.LastGTID = gtid
		}
		if h.timestamp != 0 {
			t := time.Unix(int64(h.timestamp), 0).UTC()
			if sum.First.IsZero() {
				sum.First = t
			}
			sum.Last = t
		}
		sum.Events++
		sum.End += uint64(h.size)
	}
}

// readEvent reads one whole event at offset at; io.EOF at a clean end.
func readEvent(br *bufio.Reader, at uint64) ([]byte, error) {
	hdr := make([]byte, headerLen)
	n, err := io.ReadFull(br, hdr)
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("binlog: truncated: %d bytes of an event header at %d", n, at)
	}
	size := parseHeader(hdr).size
	if size < headerLen || size > maxEvent {
		return nil, fmt.Errorf("binlog: event at %d has an impossible size %d", at, size)
	}
	// The buffer grows with what is there, not with what the header
	// claims: a damaged size must not allocate a gigabyte.
	buf := bytes.NewBuffer(make([]byte, 0, min(int(size), 1<<20)))
	buf.Write(hdr)
	if n, err := io.CopyN(buf, br, int64(size)-headerLen); err != nil {
		return nil, fmt.Errorf("binlog: truncated: the event at %d has %d of its %d bytes", at, headerLen+n, size)
	}
	return buf.Bytes(), nil
}

func checkEvent(h header, raw []byte, at uint64, crc bool) error {
	// 0: an event inside a transaction, as MariaDB 11.4 and later write
	// them (see Stream.fileEvent).
	if end := at + uint64(h.size); h.logPos != 0 && h.logPos != uint32(end) {
		return fmt.Errorf("binlog: the event at %d says it ends at %d, not %d", at, h.logPos, end)
	}
	if crc && !crcOK(raw) {
		return fmt.Errorf("binlog: the event at %d fails its CRC32", at)
	}
	return nil
}

// maxEvent bounds an event's size: the server's max_allowed_packet, and so
// a row event, is at most 1 GiB.
const maxEvent = 1<<30 + 1<<20
