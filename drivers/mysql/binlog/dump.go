package binlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// ErrPurged is returned (wrapped) when the file to stream from is no longer
// on the server: it was purged before the replica read it.
var ErrPurged = errors.New("binary log purged")

// errMasterFatal is ER_MASTER_FATAL_ERROR_READING_BINLOG.
const errMasterFatal = 1236

// purgedError names the missing file and keeps the server's error.
type purgedError struct {
	file string
	err  *ServerError
}

func (e *purgedError) Error() string {
	return fmt.Sprintf("binlog: %s is no longer on the server (purged?): %v", e.file, e.err)
}
func (e *purgedError) Is(target error) bool { return target == ErrPurged }
func (e *purgedError) Unwrap() error        { return e.err }

// dumpError turns an error packet of the dump into an error; a missing
// file is ErrPurged.
func dumpError(p []byte, file string) error {
	e := parseError(p)
	msg := strings.ToLower(e.Message)
	if e.Code == errMasterFatal && (strings.Contains(msg, "could not find first log") ||
		strings.Contains(msg, "could not find next log") || strings.Contains(msg, "purged")) {
		return &purgedError{file: file, err: e}
	}
	return fmt.Errorf("binlog: streaming %s: %w", file, e)
}

// Event is one event of a binary log file.
type Event struct {
	File string // the binlog file the event is part of
	Pos  uint64 // its offset in that file
	// Raw is header, body and checksum: exactly the file's bytes at Pos.
	// Each Event has its own Raw: Next never reuses it. (One bit may differ
	// from the disk while the server still writes the file: the format
	// description's in-use flag, which the server sends clear, as the file
	// holds it once closed; the checksum does not cover that flag.)
	Raw       []byte
	Type      byte
	Timestamp uint32
	ServerID  uint32
	GTID      string // on a GTID event: MariaDB "domain-server-seq", MySQL "uuid:gno"
	// Commit: the event ends a transaction (XID, a COMMIT query) or is a
	// statement outside one (DDL).
	Commit bool
	// NewFile: the event is the first of File (its format description at
	// offset 4); the file's 4-byte Magic precedes it.
	NewFile bool
	// EndOfFile: File ends after this event (its rotate or stop event), or
	// the stream moved on to the next file without one (the server crashed
	// before writing it, or the dump started at the end of a finished
	// file): then Raw is empty and Pos is the file's end.
	EndOfFile bool
}

// End is the offset in File right after the event.
func (e Event) End() uint64 { return e.Pos + uint64(len(e.Raw)) }

// Stream is a running binary log dump.
type Stream struct {
	c     *Conn
	ctx   context.Context
	stop  func() bool
	idle  time.Duration // read deadline when heartbeats are on
	first []byte        // the packet Dump read to see the dump start

	file  string // the file the next event is part of
	pos   uint64 // the offset of the next event
	crc   bool   // the file's events end with a CRC32
	ended bool   // EndOfFile was returned for file
	txn   txnTracker
	err   error // the first error: the stream cannot go on after it
}

// Dump registers as a replica with serverID (COM_REGISTER_SLAVE) and starts
// streaming from offset pos of file (COM_BINLOG_DUMP, 4 for the start of a
// file). heartbeat asks the server for a heartbeat when it has nothing to
// send; a stream that stays silent for three of them (and 10 s more) fails. After Dump the
// Conn only reads events; closing the Stream closes it. When ctx ends the
// connection is closed and Next returns.
func (c *Conn) Dump(ctx context.Context, serverID uint32, file string, pos uint64, heartbeat time.Duration) (*Stream, error) {
	if file == "" || strings.ContainsRune(file, 0) {
		return nil, fmt.Errorf("binlog: bad file name %q", file)
	}
	if pos < 4 || pos > math.MaxUint32 {
		return nil, fmt.Errorf("binlog: position %d in %s: want 4 to %d", pos, file, uint32(math.MaxUint32))
	}
	if serverID == 0 {
		return nil, errors.New("binlog: a replica needs a non-zero server id")
	}
	if err := c.prepareDump(ctx, serverID, heartbeat); err != nil {
		return nil, err
	}
	s := &Stream{c: c, ctx: ctx, file: file, pos: pos}
	if heartbeat > 0 {
		// Generous: the deadline is there to notice a vanished server, not
		// a slow one.
		s.idle = 3*heartbeat + 10*time.Second
	}
	s.stop = c.closeOn(ctx)
	b := binary.LittleEndian.AppendUint32([]byte{comBinlogDump}, uint32(pos))
	flags := uint16(0)
	if c.mariadb {
		flags |= 2 // BINLOG_SEND_ANNOTATE_ROWS_EVENT
	}
	b = binary.LittleEndian.AppendUint16(b, flags)
	b = binary.LittleEndian.AppendUint32(b, serverID)
	if err := c.command(append(b, file...)); err != nil {
		s.Close()
		return nil, s.wrap(err)
	}
	c.dumping = true
	p, err := s.read()
	if err == nil && len(p) > 0 && p[0] == pktErr {
		err = dumpError(p, file)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	s.first = p
	return s, nil
}

// prepareDump declares what the replica understands and registers it.
func (c *Conn) prepareDump(ctx context.Context, serverID uint32, heartbeat time.Duration) error {
	// Without these the server strips the checksums (MySQL/MariaDB),
	// rewrites GTID events to BEGIN queries and leaves out annotate-rows
	// events (MariaDB): the bytes would not be the file's.
	stmts := []string{"SET @master_binlog_checksum = @@global.binlog_checksum, @source_binlog_checksum = @@global.binlog_checksum"}
	if c.mariadb {
		stmts = append(stmts, "SET @mariadb_slave_capability = 4")
	}
	if heartbeat > 0 {
		ns := fmt.Sprint(heartbeat.Nanoseconds())
		stmts = append(stmts, "SET @master_heartbeat_period = "+ns+", @source_heartbeat_period = "+ns)
	}
	for _, q := range stmts {
		if _, err := c.Query(ctx, q); err != nil {
			return fmt.Errorf("binlog: prepare the dump: %w", err)
		}
	}
	b := binary.LittleEndian.AppendUint32([]byte{comRegisterSlave}, serverID)
	b = append(b, 0, 0, 0)                     // hostname, user, password: not reported
	b = binary.LittleEndian.AppendUint16(b, 0) // port
	b = binary.LittleEndian.AppendUint32(b, 0) // replication rank
	b = binary.LittleEndian.AppendUint32(b, 0) // master id
	stop := c.closeOn(ctx)
	err := c.command(b)
	var p []byte
	if err == nil {
		p, err = c.readPacket()
	}
	if !stop() {
		return fmt.Errorf("binlog: register as a replica: %w", ctx.Err())
	}
	switch {
	case err != nil:
		return fmt.Errorf("binlog: register as a replica: %w", err)
	case len(p) > 0 && p[0] == pktErr:
		return fmt.Errorf("binlog: register as a replica: %w", parseError(p))
	case len(p) == 0 || p[0] != pktOK:
		return errors.New("binlog: register as a replica: unexpected answer")
	}
	return nil
}

// Close ends the stream and its connection.
func (s *Stream) Close() error {
	s.stop()
	s.c.closeOnce.Do(func() { s.c.closeErr = s.c.nc.Close() })
	return nil
}

// read reads the next packet, failing after three silent heartbeats.
func (s *Stream) read() ([]byte, error) {
	if s.idle > 0 {
		s.c.nc.SetReadDeadline(time.Now().Add(s.idle))
	}
	p, err := s.c.readPacket()
	return p, s.wrap(err)
}

func (s *Stream) wrap(err error) error {
	if err != nil && s.ctx.Err() != nil {
		return fmt.Errorf("binlog: stream: %w", s.ctx.Err())
	}
	return err
}

// Next returns the next event of the binary log, blocking until there is
// one. Heartbeats, the artificial rotate and the format description the
// server re-sends when a dump starts in the middle of a file are consumed:
// every event returned is bytes of a file, at the offset where the previous
// one ended.
// After an error every call returns it again.
func (s *Stream) Next() (Event, error) {
	for s.err == nil {
		raw, err := s.nextPacket()
		if err != nil {
			s.err = err
			break
		}
		ev, ok, err := s.handle(raw)
		if err != nil {
			s.err = err
			break
		}
		if ok {
			return ev, nil
		}
	}
	return Event{}, s.err
}

// nextPacket returns the next event's bytes, without the OK marker.
func (s *Stream) nextPacket() ([]byte, error) {
	p := s.first
	s.first = nil
	if p == nil {
		var err error
		if p, err = s.read(); err != nil {
			return nil, err
		}
	}
	switch {
	case len(p) > 0 && p[0] == pktErr:
		return nil, dumpError(p, s.file)
	case isEOF(p):
		return nil, fmt.Errorf("binlog: the server ended the dump at %s:%d: %w", s.file, s.pos, io.ErrUnexpectedEOF)
	case len(p) < 1+headerLen || p[0] != pktOK:
		return nil, fmt.Errorf("binlog: malformed event packet at %s:%d", s.file, s.pos)
	}
	return p[1:], nil
}

// handle decides what an event packet is; ok is false when it is consumed.
func (s *Stream) handle(raw []byte) (ev Event, ok bool, err error) {
	h := parseHeader(raw)
	if int64(h.size) != int64(len(raw)) {
		return ev, false, fmt.Errorf("binlog: event at %s:%d says %d bytes, the packet holds %d", s.file, s.pos, h.size, len(raw))
	}
	switch {
	case h.typ == typeHeartbeat || h.typ == typeHeartbeatV2:
		return ev, false, nil
	case h.typ == typeRotate && (h.logPos == 0 || h.flags&flagArtificial != 0):
		return s.artificialRotate(raw)
	case h.typ == typeFormatDescription && h.logPos == 0:
		// Re-sent when the dump starts past offset 4: the reader learns the
		// file's format, the bytes are not at the position.
		s.crc, err = fdeChecksum(raw)
		if err == nil && s.crc && !crcOK(raw) {
			err = fmt.Errorf("binlog: format description of %s: checksum mismatch", s.file)
		}
		return ev, false, err
	}
	ev, err = s.fileEvent(h, raw)
	return ev, err == nil, err
}

// artificialRotate follows the server to the file and position it names.
// Moving to another file when the old one did not end with a rotate or stop
// event yields an EndOfFile event without bytes.
func (s *Stream) artificialRotate(raw []byte) (Event, bool, error) {
	if crcOK(raw) { // whether it carries a checksum depends on no file
		raw = raw[:len(raw)-4]
	}
	name, pos, err := rotateTarget(raw[headerLen:])
	if err != nil {
		return Event{}, false, err
	}
	if name == s.file {
		if pos != s.pos {
			return Event{}, false, fmt.Errorf("binlog: the server continues %s at %d, the stream is at %d", name, pos, s.pos)
		}
		return Event{}, false, nil
	}
	if pos != 4 {
		return Event{}, false, fmt.Errorf("binlog: the server moves from %s:%d to %s:%d, not to a file's start", s.file, s.pos, name, pos)
	}
	ev := Event{File: s.file, Pos: s.pos, EndOfFile: true}
	ended := s.ended
	s.file, s.pos, s.ended, s.txn = name, pos, false, txnTracker{}
	return ev, !ended, nil
}

// fileEvent checks an event of the file against the stream's position and
// its checksum, and describes it.
func (s *Stream) fileEvent(h header, raw []byte) (Event, error) {
	if s.ended {
		return Event{}, fmt.Errorf("binlog: event of type %d after the end of %s", h.typ, s.file)
	}
	if h.typ == typeFormatDescription {
		if s.pos != 4 {
			return Event{}, fmt.Errorf("binlog: format description at %s:%d, not at the file's start", s.file, s.pos)
		}
		var err error
		if s.crc, err = fdeChecksum(raw); err != nil {
			return Event{}, err
		}
		s.txn = txnTracker{}
	}
	// MariaDB 11.4 and later write the events inside a transaction without
	// their end position (0, binlog_legacy_event_pos=OFF): their place is
	// where the one before ended, and the transaction's last event, which
	// carries its position, checks them all.
	if end := s.pos + uint64(h.size); h.logPos != 0 && h.logPos != uint32(end) {
		return Event{}, fmt.Errorf("binlog: event at %s:%d ends at %d, not %d: the stream has a gap", s.file, s.pos, h.logPos, end)
	}
	if s.crc && !crcOK(raw) {
		return Event{}, fmt.Errorf("binlog: event at %s:%d: checksum mismatch", s.file, s.pos)
	}
	ev := Event{File: s.file, Pos: s.pos, Raw: raw, Type: h.typ, Timestamp: h.timestamp, ServerID: h.serverID,
		NewFile: h.typ == typeFormatDescription}
	ev.GTID, ev.Commit = s.txn.observe(h, body(raw, s.crc))
	s.pos += uint64(h.size)
	switch h.typ {
	case typeStop:
		ev.EndOfFile, s.ended = true, true
	case typeRotate:
		name, pos, err := rotateTarget(body(raw, s.crc))
		if err != nil {
			return Event{}, err
		}
		ev.EndOfFile = true
		s.file, s.pos, s.ended, s.txn = name, pos, false, txnTracker{}
	}
	return ev, nil
}
