package mysql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql/binlog"
)

// Binary log streaming: the agent registers with the server as a replica
// (a server id of its own) and stores the binary log in pieces, each the
// bytes of one file from where the last one ended, at least every flush
// interval. After a restart it resumes where the archive ends, at the byte.

// Piece is a run of a binary log file's bytes to store.
type Piece struct {
	System  string // the server's identity: server_uuid (MySQL) or server_id (MariaDB)
	File    string
	Created uint32 // when the server opened the file (its format description's time)
	Start   uint64
	End     uint64
	Last    bool // the file ends at End: the stream moved on to the next
	Data    []byte
	// First and LastEvent are the oldest and newest event timestamps in
	// Data; GTID is the last transaction's.
	FirstEvent, LastEvent time.Time
	GTID                  string
}

// Resume is where the archive ends: ok false when it is empty.
type Resume struct {
	System  string
	File    string
	Created uint32
	End     uint64
	Last    bool
}

// BinlogSink keeps the streamed binary log.
type BinlogSink interface {
	// Resume is where the archive ends in the destination furthest behind.
	Resume(ctx context.Context) (Resume, bool, error)
	// Store keeps p in every destination, or fails. It must not keep
	// p.Data: the streamer reuses it.
	Store(ctx context.Context, p Piece) error
}

// BinlogStats is how far the streamer got, for metrics and status.
type BinlogStats struct {
	Connected  bool
	File       string    // the file of the newest stored piece (at first, where streaming began)
	Stored     uint64    // offset in File up to which the archive holds it
	StoredAt   time.Time // when the newest piece was stored
	LastEvent  time.Time // the newest event stored (the server's clock)
	Received   time.Time // the newest event received
	Pending    uint64    // bytes received and not stored yet
	Gaps       int       // binary log the server no longer had when the archive needed it
	LastError  string
	PiecesDone int
}

// BinlogStreamer streams a server's binary log into a sink until its
// context ends.
type BinlogStreamer struct {
	DSN      string
	ServerID uint32 // the replica id it registers with (must differ from every server's)
	Flush    time.Duration
	Sink     BinlogSink
	Log      *slog.Logger
	// Stored, if set, is called after each piece is stored (its Data only
	// valid during the call).
	Stored func(p Piece, at time.Time)

	mu    sync.Mutex
	stats BinlogStats
}

// MaxPiece is the size at which a piece is stored without waiting for the
// flush interval: the bound on what streaming holds in memory (an event
// larger than it makes a piece of its own size).
const MaxPiece = 16 << 20

// DefaultServerID is the replica id the streamer registers with unless
// told another.
const DefaultServerID = 1984750001

// Stats is a snapshot of the streamer's progress.
func (s *BinlogStreamer) Stats() BinlogStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *BinlogStreamer) update(f func(*BinlogStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

// Run streams until ctx ends, reconnecting after every failure with a
// growing pause (1 s to 1 min). It returns only ctx's error, or an error
// in its configuration.
func (s *BinlogStreamer) Run(ctx context.Context) error {
	d, err := New(driversConfig(s.DSN))
	if err != nil {
		return err
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Flush <= 0 {
		s.Flush = 10 * time.Second
	}
	if s.ServerID == 0 {
		s.ServerID = DefaultServerID
	}
	return drivers.Reconnect(ctx, func(ctx context.Context) error { return s.session(ctx, d) }, func(err error, pause time.Duration) {
		s.update(func(st *BinlogStats) { st.Connected, st.LastError = false, err.Error() })
		s.Log.Warn("binary log streaming stopped; reconnecting", "error", err, "in", pause.String())
	})
}

// dial opens a protocol connection as the DSN says.
func (d *Driver) dial(ctx context.Context) (*binlog.Conn, error) {
	c, err := binlog.Dial(ctx, binlog.Config{Network: d.network, Address: d.where, User: d.user, Password: d.password})
	if err != nil {
		return nil, fmt.Errorf("mysql %s: %w", d.where, err)
	}
	return c, nil
}

// start is where a session begins streaming.
type start struct {
	file    string
	pos     uint64
	created uint32 // of file, when resuming inside it
	gap     string // binary log the server no longer has, if any
}

// session connects, finds where to begin and streams until an error.
func (s *BinlogStreamer) session(ctx context.Context, d *Driver) error {
	conn, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	info, err := conn.Inspect(ctx)
	if err != nil {
		return err
	}
	if !info.LogBin {
		return fmt.Errorf("mysql %s: binary logging is off: start the server with log_bin (and binlog_format=ROW) for point-in-time recovery", d.where)
	}
	if info.Format != "ROW" {
		s.Log.Warn("binlog_format is not ROW: a point-in-time restore of one database (--database) may miss or misplace statements that name other databases", "binlog_format", info.Format)
	}
	system := info.ServerUUID
	if system == "" {
		system = strconv.FormatUint(uint64(info.ServerID), 10)
	}
	at, err := s.begin(ctx, d, conn)
	if err != nil {
		return err
	}
	if at.gap != "" {
		s.update(func(st *BinlogStats) { st.Gaps++ })
		s.Log.Error("binary log the archive needs is gone from the server (purged before it was stored): point-in-time restores cannot cross this gap; take a new backup", "missing", at.gap)
	}
	stream, err := conn.Dump(ctx, s.ServerID, at.file, at.pos, min(s.Flush, 30*time.Second))
	if err != nil {
		return err
	}
	defer stream.Close()
	s.update(func(st *BinlogStats) {
		st.Connected, st.LastError = true, ""
		if st.File == "" {
			st.File, st.Stored = at.file, at.pos
		}
	})
	s.Log.Info("streaming the binary log", "file", at.file, "position", at.pos)
	p := &pending{system: system, file: at.file, created: at.created, start: at.pos, end: at.pos}
	return s.pump(ctx, stream, p)
}

// begin finds where to stream from: where the archive ends, if the server
// still has that file (the same file: a server made anew reuses names),
// else its oldest file (a gap, when the archive had an end).
func (s *BinlogStreamer) begin(ctx context.Context, d *Driver, conn *binlog.Conn) (start, error) {
	files, err := conn.Binlogs(ctx)
	if err != nil {
		return start{}, err
	}
	if len(files) == 0 {
		return start{}, errors.New("the server lists no binary log")
	}
	oldest := start{file: files[0].Name, pos: 4}
	r, ok, err := s.Sink.Resume(ctx)
	if err != nil || !ok {
		return oldest, err
	}
	num := fileNumber(r.File)
	for _, f := range files {
		switch {
		case r.Last && fileNumber(f.Name) == num+1:
			return start{file: f.Name, pos: 4}, nil
		case !r.Last && f.Name == r.File:
			created, err := d.created(ctx, f.Name)
			if err != nil {
				return start{}, err
			}
			if created == r.Created {
				return start{file: f.Name, pos: r.End, created: created}, nil
			}
			return oldest, nil // a server made anew: a new history
		}
	}
	if fileNumber(files[0].Name) > num {
		oldest.gap = fmt.Sprintf("%s from %d on", r.File, r.End)
		if r.Last {
			oldest.gap = fmt.Sprintf("the files after %s up to %s", r.File, files[0].Name)
		}
	}
	return oldest, nil
}

// created reads when the server opened a file: the timestamp of its format
// description, the first event.
func (d *Driver) created(ctx context.Context, file string) (uint32, error) {
	conn, err := d.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	st, err := conn.Dump(ctx, DefaultServerID+1, file, 4, 30*time.Second)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	ev, err := st.Next()
	if err != nil {
		return 0, err
	}
	if !ev.NewFile || ev.File != file {
		return 0, fmt.Errorf("mysql: reading %s from its start gave %s@%d first", file, ev.File, ev.Pos)
	}
	return ev.Timestamp, nil
}

// fileNumber is the number a binary log's name ends with.
func fileNumber(name string) uint64 {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '.' {
			n, _ := strconv.ParseUint(name[i+1:], 10, 64)
			return n
		}
	}
	return 0
}

// magic begins every binary log file.
var magic = []byte{0xfe, 'b', 'i', 'n'}

// pending is the piece being gathered.
type pending struct {
	system      string
	file        string
	created     uint32
	start, end  uint64 // the piece's offsets: end is where the next event must begin
	data        []byte
	first, last time.Time
	gtid        string
	since       time.Time // when its first byte came; zero when empty
}

// add appends an event, checking that it begins where the piece ends.
func (p *pending) add(ev binlog.Event, now time.Time) error {
	if ev.NewFile {
		if len(p.data) > 0 {
			return fmt.Errorf("the server began %s with bytes of %s pending and no end of that file", ev.File, p.file)
		}
		*p = pending{system: p.system, file: ev.File, created: ev.Timestamp, data: append(p.data[:0], magic...), end: uint64(len(magic))}
		p.since = now
	}
	if ev.File != p.file || ev.Pos != p.end {
		return fmt.Errorf("the stream gave %s@%d where %s@%d was due: refusing a gap or an overlap", ev.File, ev.Pos, p.file, p.end)
	}
	if len(ev.Raw) == 0 {
		return nil
	}
	if len(p.data) == 0 {
		p.since = now
	}
	p.data = append(p.data, ev.Raw...)
	p.end += uint64(len(ev.Raw))
	if ev.Timestamp != 0 {
		t := time.Unix(int64(ev.Timestamp), 0)
		if p.first.IsZero() || t.Before(p.first) {
			p.first = t
		}
		if t.After(p.last) {
			p.last = t
		}
	}
	if ev.GTID != "" {
		p.gtid = ev.GTID
	}
	return nil
}

// piece is what is gathered, to store.
func (p *pending) piece(last bool) Piece {
	return Piece{System: p.system, File: p.file, Created: p.created, Start: p.start, End: p.end, Last: last,
		Data: p.data, FirstEvent: p.first, LastEvent: p.last, GTID: p.gtid}
}

// stored starts the next piece where the stored one ended, in the same
// buffer: the sink does not keep a piece's bytes.
func (p *pending) stored() {
	p.start, p.data, p.first, p.since = p.end, p.data[:0], time.Time{}, time.Time{}
}

// pump reads events and stores pieces: when a file ends, when a piece
// reaches MaxPiece, and when its oldest byte has waited the flush
// interval.
func (s *BinlogStreamer) pump(ctx context.Context, stream *binlog.Stream, p *pending) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan binlog.Event)
	failed := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Next()
			if err != nil {
				failed <- err
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(min(s.Flush/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-failed:
			return err
		case ev := <-events:
			if err := s.take(ctx, p, ev); err != nil {
				return err
			}
		case now := <-tick.C:
			if !p.since.IsZero() && now.Sub(p.since) >= s.Flush && len(p.data) > 0 {
				if err := s.store(ctx, p, false); err != nil {
					return err
				}
			}
		}
	}
}

// take adds one event and stores what must be stored now.
func (s *BinlogStreamer) take(ctx context.Context, p *pending, ev binlog.Event) error {
	now := time.Now()
	if err := p.add(ev, now); err != nil {
		return err
	}
	s.update(func(st *BinlogStats) { st.Received, st.Pending = now, uint64(len(p.data)) })
	switch {
	case ev.EndOfFile:
		return s.store(ctx, p, true)
	case len(p.data) >= MaxPiece:
		return s.store(ctx, p, false)
	}
	return nil
}

// store keeps the gathered piece in the sink.
func (s *BinlogStreamer) store(ctx context.Context, p *pending, last bool) error {
	pc := p.piece(last)
	if err := s.Sink.Store(ctx, pc); err != nil {
		return err
	}
	now := time.Now()
	p.stored()
	s.update(func(st *BinlogStats) {
		st.File, st.Stored, st.StoredAt, st.PiecesDone, st.Pending = pc.File, pc.End, now, st.PiecesDone+1, 0
		if pc.LastEvent.After(st.LastEvent) {
			st.LastEvent = pc.LastEvent
		}
	})
	if s.Stored != nil {
		s.Stored(pc, now)
	}
	return nil
}

// driversConfig is the configuration a streamer's driver is built from.
func driversConfig(dsn string) drivers.Config { return drivers.Config{DSN: dsn} }
