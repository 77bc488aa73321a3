package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"remora.dev/remora/drivers"
)

// WAL streaming: the sidecar receives the server's WAL over the replication
// protocol, as pg_receivewal does, through a physical replication slot, and
// hands every completed segment (and the current one, as a partial, at
// least every flush interval) to a sink that stores it. The slot is told a
// position is flushed only once the sink stored it, so the server keeps
// every byte the archive does not hold yet, across restarts of either side.

// WALFile is a file the streamer hands to its sink.
type WALFile struct {
	System   string // the cluster's system identifier
	Timeline uint32
	Name     string // the file's name (a segment's, or a history file's)
	Partial  bool   // a segment's first len(Data) bytes
	Start    LSN    // of the first byte (segments)
	End      LSN    // after the last byte (segments)
	Data     []byte
}

// WALSink keeps what the streamer receives.
type WALSink interface {
	// Next is where the archive ends for the cluster: the timeline and
	// start of the first segment it does not hold in full in every
	// destination. ok is false when it holds none of this cluster's.
	Next(ctx context.Context, system string, segSize uint64) (tli uint32, start LSN, ok bool, err error)
	// Store keeps f in every destination, or fails.
	Store(ctx context.Context, f WALFile) error
}

// WALStreamer streams a server's WAL into a sink until its context ends.
type WALStreamer struct {
	DSN   string // the driver's DSN (postgres://...)
	Slot  string // the physical replication slot, created if missing
	Flush time.Duration
	Sink  WALSink
	Log   *slog.Logger
	// RetainWarn is how much WAL the slot may hold back before the
	// streamer warns (0: 1 GiB).
	RetainWarn uint64

	mu    sync.Mutex
	stats WALStats
}

// WALStats is how far the streamer got, for metrics and status.
type WALStats struct {
	Connected    bool
	Timeline     uint32
	Stored       LSN       // everything before it is in the archive (partials included)
	StoredAt     time.Time // when the newest file was stored
	ServerEnd    LSN       // the server's WAL end, as it last said
	SlotRestart  LSN       // the oldest WAL the slot keeps
	Gaps         int       // WAL the server no longer had when the archive needed it
	LastError    string
	SegmentsDone int
}

// Stats is a snapshot of the streamer's progress.
func (s *WALStreamer) Stats() WALStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *WALStreamer) update(f func(*WALStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.stats)
}

// slotNameRE is what a physical slot's name may be.
var slotNameRE = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Run streams until ctx ends, reconnecting after every failure with a
// growing pause (1 s to 1 min). It returns only ctx's error, or an error
// in its configuration.
func (s *WALStreamer) Run(ctx context.Context) error {
	if !slotNameRE.MatchString(s.Slot) {
		return fmt.Errorf("replication slot name %q: want 1 to 63 of a-z, 0-9 and _", s.Slot)
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Flush <= 0 {
		s.Flush = 10 * time.Second
	}
	return drivers.Reconnect(ctx, s.session, func(err error, pause time.Duration) {
		s.update(func(st *WALStats) { st.Connected, st.LastError = false, err.Error() })
		s.Log.Warn("WAL streaming stopped; reconnecting", "error", err, "in", pause.String())
	})
}

// replicationConn opens a physical replication connection with the DSN.
func replicationConn(ctx context.Context, dsn string) (*pgconn.PgConn, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, errors.New("postgres: bad DSN")
	}
	q := u.Query()
	q.Set("replication", "true")
	if q.Get("application_name") == "" {
		q.Set("application_name", "remora")
	}
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", "15")
	}
	u.RawQuery = q.Encode()
	password, _ := u.User.Password()
	conn, err := pgconn.Connect(ctx, u.String())
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "28000" {
			return nil, fmt.Errorf("postgres: replication connection refused (%s): the user needs the REPLICATION attribute and pg_hba.conf a \"replication\" line for it", pgErr.Message)
		}
		return nil, fmt.Errorf("postgres: replication connection: %s", scrub(err, password))
	}
	return conn, nil
}

// stream is one replication session's state.
type stream struct {
	s       *WALStreamer
	conn    *pgconn.PgConn
	system  string
	segSize uint64
	tli     uint32
	seg     LSN       // start of the segment being received
	buf     []byte    // its bytes so far
	flushed int       // len(buf) when it was last stored as a partial
	pending time.Time // when the oldest byte not stored was received; zero: none
	keep    LSN       // where the slot's WAL begins, when it is after the archive's end
	keepTLI uint32
	stored  LSN // reported to the server as flushed
}

// session connects, finds where the archive ends and streams from there
// until an error.
func (s *WALStreamer) session(ctx context.Context) error {
	conn, err := replicationConn(ctx, s.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	segSize, err := showSegmentSize(ctx, conn)
	if err != nil {
		return err
	}
	st := &stream{s: s, conn: conn, system: sys.SystemID, segSize: segSize}
	tli, start, err := st.startPoint(ctx, uint32(sys.Timeline))
	if err != nil {
		return err
	}
	s.update(func(x *WALStats) { x.Connected, x.LastError = true, "" })
	for {
		next, nextStart, err := st.follow(ctx, tli, start)
		if errors.Is(err, errWALRemoved) && st.keep > start {
			st.s.update(func(x *WALStats) { x.Gaps++ })
			st.s.Log.Error("WAL gap: the server no longer has WAL the archive needs (its slot was dropped or recreated); restores cannot cross it",
				"missing_from", start.String(), "missing_to", st.keep.String())
			next, nextStart, st.keep = st.keepTLI, st.keep, 0
			err = nil
		}
		if err != nil {
			return err
		}
		tli, start = next, nextStart
	}
}

// showSegmentSize reads wal_segment_size.
func showSegmentSize(ctx context.Context, conn *pgconn.PgConn) (uint64, error) {
	res, err := conn.Exec(ctx, "SHOW wal_segment_size").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		return 0, fmt.Errorf("SHOW wal_segment_size: %v", err)
	}
	v := strings.TrimSpace(string(res[0].Rows[0][0]))
	n, unit := v, uint64(1)
	for suffix, mult := range map[string]uint64{"MB": 1 << 20, "GB": 1 << 30, "kB": 1 << 10} {
		if strings.HasSuffix(v, suffix) {
			n, unit = strings.TrimSuffix(v, suffix), mult
		}
	}
	size, err := strconv.ParseUint(n, 10, 64)
	if err != nil || !ValidSegmentSize(size*unit) {
		return 0, fmt.Errorf("the server's wal_segment_size %q is not understood", v)
	}
	return size * unit, nil
}

// slotInfo reads the slot (READ_REPLICATION_SLOT, PostgreSQL 15 and
// later), creating it, with its WAL reserved from now, if it is missing.
// restart is where its WAL begins; zero when the server cannot say.
func (st *stream) slotInfo(ctx context.Context) (restart LSN, tli uint32, err error) {
	for range 2 {
		res, err := st.conn.Exec(ctx, "READ_REPLICATION_SLOT "+st.s.Slot).ReadAll()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42601" {
			return 0, 0, nil // before PostgreSQL 15: the slot is created below if missing
		}
		if err != nil {
			return 0, 0, fmt.Errorf("READ_REPLICATION_SLOT: %w", err)
		}
		if len(res) == 1 && len(res[0].Rows) == 1 && res[0].Rows[0][0] != nil {
			row := res[0].Rows[0]
			if string(row[0]) != "physical" {
				return 0, 0, fmt.Errorf("replication slot %s is a %s slot: Remora needs a physical one of its own (pick another name)", st.s.Slot, row[0])
			}
			restart, _ = pglogrepl.ParseLSN(string(row[1]))
			t, _ := strconv.ParseUint(string(row[2]), 10, 32)
			return restart, uint32(t), nil
		}
		if err := st.createSlot(ctx); err != nil {
			return 0, 0, err
		}
	}
	return 0, 0, fmt.Errorf("replication slot %s: created, but the server does not show it", st.s.Slot)
}

// createSlot creates the physical slot, keeping WAL from now on.
func (st *stream) createSlot(ctx context.Context) error {
	_, err := st.conn.Exec(ctx, "CREATE_REPLICATION_SLOT "+st.s.Slot+" PHYSICAL RESERVE_WAL").ReadAll()
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42710":
		return nil // it exists
	case errors.As(err, &pgErr) && pgErr.Code == "53400":
		return fmt.Errorf("cannot create replication slot %s: every slot is taken: raise max_replication_slots (%s)", st.s.Slot, pgErr.Message)
	case err != nil:
		return fmt.Errorf("create replication slot %s: %w", st.s.Slot, err)
	}
	st.s.Log.Info("created the physical replication slot; drop it with SELECT pg_drop_replication_slot('"+st.s.Slot+"') if WAL archiving is switched off for good", "slot", st.s.Slot)
	return nil
}

// startPoint is where to stream from: the end of the archive, or where
// the slot's WAL begins when the archive holds nothing of this cluster
// or the server no longer has what the archive needs next (a gap, which
// is reported).
func (st *stream) startPoint(ctx context.Context, serverTLI uint32) (uint32, LSN, error) {
	restart, restartTLI, err := st.slotInfo(ctx)
	if err != nil {
		return 0, 0, err
	}
	st.s.update(func(x *WALStats) { x.SlotRestart = restart })
	tli, start, ok, err := st.s.Sink.Next(ctx, st.system, st.segSize)
	if err != nil {
		return 0, 0, fmt.Errorf("reading where the WAL archive ends: %w", err)
	}
	keep := segmentStart(restart, st.segSize)
	switch {
	case !ok && restart == 0:
		return 0, 0, errors.New("the WAL archive is empty and the server cannot say where the slot begins (PostgreSQL 15 or later is needed to start an archive)")
	case !ok:
		st.s.Log.Info("starting a new WAL archive", "timeline", restartTLI, "from", keep.String())
		return max(restartTLI, 1), keep, nil
	case restart != 0 && start < keep:
		// The slot does not keep what the archive needs next (it was
		// dropped or recreated): the server may still have it; if not,
		// session reports the gap and goes on from keep.
		st.keep, st.keepTLI = keep, max(restartTLI, tli)
	}
	if tli < serverTLI {
		return st.crossTimelines(ctx, tli, start, serverTLI)
	}
	return tli, start, nil
}

// crossTimelines finds where an archive that ends on timeline tli at start
// goes on on the server, which is on a later timeline: on tli itself if
// the server's history keeps it past start, else at the segment where the
// next timeline of the history branched off. The server's history file is
// stored on the way.
func (st *stream) crossTimelines(ctx context.Context, tli uint32, start LSN, serverTLI uint32) (uint32, LSN, error) {
	hist, err := st.storeHistory(ctx, serverTLI)
	if err != nil {
		return 0, 0, err
	}
	pos := start
	for i, e := range hist {
		if e.TLI < tli {
			continue
		}
		if pos < segmentStart(e.End, st.segSize) {
			return e.TLI, pos, nil
		}
		pos = min(pos, segmentStart(e.End, st.segSize))
		if i+1 < len(hist) {
			tli = hist[i+1].TLI
		} else {
			tli = serverTLI
		}
	}
	return tli, pos, nil
}

// storeHistory fetches a timeline's history file, stores it, and returns
// its entries.
func (st *stream) storeHistory(ctx context.Context, tli uint32) ([]HistoryEntry, error) {
	h, err := pglogrepl.TimelineHistory(ctx, st.conn, int32(tli))
	if err != nil {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d: %w", tli, err)
	}
	entries, err := ParseHistory(h.Content)
	if err != nil {
		return nil, err
	}
	f := WALFile{System: st.system, Timeline: tli, Name: HistoryName(tli), Data: h.Content}
	if err := st.s.Sink.Store(ctx, f); err != nil {
		return nil, err
	}
	return entries, nil
}

// follow streams timeline tli from start (a segment's first byte) until
// the timeline ends, and returns where the next one begins; or until an
// error.
func (st *stream) follow(ctx context.Context, tli uint32, start LSN) (uint32, LSN, error) {
	st.tli, st.seg, st.buf, st.flushed, st.stored, st.pending = tli, start, make([]byte, 0, st.segSize), 0, start, time.Time{}
	st.s.update(func(x *WALStats) { x.Timeline, x.Stored = tli, start })
	err := pglogrepl.StartReplication(ctx, st.conn, st.s.Slot, start, pglogrepl.StartReplicationOptions{Timeline: int32(tli), Mode: pglogrepl.PhysicalReplication})
	if next, nextStart, ended := pglogrepl.IsErrEndTimeline(err); ended {
		// The timeline ended before start: go on on its successor.
		return st.nextTimeline(ctx, uint32(next), nextStart)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("START_REPLICATION at %s on timeline %d: %w", start, tli, explainStart(err))
	}
	st.s.Log.Info("streaming WAL", "timeline", tli, "from", start.String())
	if err := st.receive(ctx); err != nil {
		return 0, 0, err
	}
	// The server ended the timeline: the segment it was in is stored as
	// it is (a partial; its rest is on the next timeline).
	if err := st.storePartial(ctx); err != nil {
		return 0, 0, err
	}
	res, err := pglogrepl.SendStandbyCopyDone(ctx, st.conn)
	if err != nil {
		return 0, 0, fmt.Errorf("end of timeline %d: %w", tli, err)
	}
	if res == nil {
		return 0, 0, fmt.Errorf("timeline %d ended, and the server did not say which follows", tli)
	}
	return st.nextTimeline(ctx, uint32(res.Timeline), res.LSN)
}

// nextTimeline stores the history file of timeline next, which branched
// off at lsn, and returns where streaming goes on: the start of the
// segment that holds lsn, on next.
func (st *stream) nextTimeline(ctx context.Context, next uint32, lsn LSN) (uint32, LSN, error) {
	if _, err := st.storeHistory(ctx, next); err != nil {
		return 0, 0, err
	}
	st.s.Log.Info("following a new timeline", "timeline", next, "from", lsn.String())
	return next, segmentStart(lsn, st.segSize), nil
}

// errWALRemoved: the server no longer has WAL streaming asked for.
var errWALRemoved = errors.New("the server removed WAL the archive still needs: a gap")

// explainStart names the usual reason START_REPLICATION fails.
func explainStart(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "58P01" {
		return fmt.Errorf("%w (%w)", errWALRemoved, err)
	}
	return err
}

// receive reads the stream until the server ends it (nil) or an error,
// storing every completed segment, and the current one as a partial once
// its oldest unstored byte waited a flush interval; and telling the
// server what is stored. While WAL flows fast, segments complete within
// the interval and no partial is written.
func (st *stream) receive(ctx context.Context) error {
	status := time.Now()
	for {
		wait := st.s.Flush
		if !st.pending.IsZero() {
			wait = max(time.Until(st.pending.Add(st.s.Flush)), time.Millisecond)
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		msg, err := st.conn.ReceiveMessage(rctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && pgconn.Timeout(err):
			// Nothing within the wait: store and report below.
		case err != nil:
			return fmt.Errorf("receiving WAL: %w", err)
		}
		done, err := st.handle(ctx, msg)
		if err != nil || done {
			return err
		}
		if !st.pending.IsZero() && time.Since(st.pending) >= st.s.Flush {
			if err := st.storePartial(ctx); err != nil {
				return err
			}
		}
		if time.Since(status) >= st.s.Flush {
			if err := st.sendStatus(ctx, false); err != nil {
				return err
			}
			status = time.Now()
		}
	}
}

// handle takes one message of the stream. done is true when the server
// ended it.
func (st *stream) handle(ctx context.Context, msg pgproto3.BackendMessage) (done bool, err error) {
	switch m := msg.(type) {
	case nil:
		return false, nil
	case *pgproto3.CopyDone:
		return true, nil
	case *pgproto3.ErrorResponse:
		return false, explainStart(pgconn.ErrorResponseToPgError(m))
	case *pgproto3.CopyData:
		if len(m.Data) == 0 {
			return false, nil
		}
		switch m.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			k, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
			if err != nil {
				return false, err
			}
			st.s.update(func(x *WALStats) { x.ServerEnd = max(x.ServerEnd, k.ServerWALEnd) })
			if k.ReplyRequested {
				return false, st.sendStatus(ctx, false)
			}
		case pglogrepl.XLogDataByteID:
			x, err := pglogrepl.ParseXLogData(m.Data[1:])
			if err != nil {
				return false, err
			}
			st.s.update(func(s *WALStats) { s.ServerEnd = max(s.ServerEnd, x.ServerWALEnd) })
			return false, st.take(ctx, x.WALStart, x.WALData)
		}
	}
	return false, nil
}

// take appends WAL that begins at lsn to the segments being received,
// storing each one as it completes.
func (st *stream) take(ctx context.Context, lsn LSN, data []byte) error {
	if want := st.seg + LSN(len(st.buf)); lsn != want {
		return fmt.Errorf("the server sent WAL at %s, expected %s", lsn, want)
	}
	for len(data) > 0 {
		n := min(len(data), int(st.segSize)-len(st.buf))
		st.buf = append(st.buf, data[:n]...)
		data = data[n:]
		if st.pending.IsZero() {
			st.pending = time.Now()
		}
		if len(st.buf) < int(st.segSize) {
			break
		}
		f := WALFile{System: st.system, Timeline: st.tli, Name: SegmentName(st.tli, st.seg, st.segSize),
			Start: st.seg, End: st.seg + LSN(st.segSize), Data: st.buf}
		if err := st.s.Sink.Store(ctx, f); err != nil {
			return err
		}
		st.seg += LSN(st.segSize)
		st.buf, st.flushed, st.pending = st.buf[:0], 0, time.Time{}
		st.stored = st.seg
		st.s.update(func(x *WALStats) { x.Stored, x.StoredAt, x.SegmentsDone = st.seg, time.Now(), x.SegmentsDone+1 })
		if err := st.sendStatus(ctx, false); err != nil {
			return err
		}
	}
	return nil
}

// storePartial stores the segment being received as far as it goes, if
// it grew since it was last stored.
func (st *stream) storePartial(ctx context.Context) error {
	if len(st.buf) == st.flushed {
		st.pending = time.Time{}
		return nil
	}
	end := st.seg + LSN(len(st.buf))
	f := WALFile{System: st.system, Timeline: st.tli, Name: SegmentName(st.tli, st.seg, st.segSize), Partial: true,
		Start: st.seg, End: end, Data: st.buf}
	if err := st.s.Sink.Store(ctx, f); err != nil {
		return err
	}
	st.flushed, st.stored, st.pending = len(st.buf), end, time.Time{}
	st.s.update(func(x *WALStats) { x.Stored, x.StoredAt = end, time.Now() })
	return st.sendStatus(ctx, false)
}

// sendStatus tells the server what is received and what is stored: the
// slot keeps everything from the stored position on.
func (st *stream) sendStatus(ctx context.Context, reply bool) error {
	received := st.seg + LSN(len(st.buf))
	return pglogrepl.SendStandbyStatusUpdate(ctx, st.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: received, WALFlushPosition: st.stored, WALApplyPosition: st.stored, ReplyRequested: reply})
}

// SlotRetained is how much WAL the replication slot holds back on the
// server: from its restart position to the server's current one, in
// bytes. A slot that does not exist holds nothing.
func (d *Driver) SlotRetained(ctx context.Context, slot string) (uint64, error) {
	conn, err := d.connect(ctx, d.adminDB)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n *int64
	err = conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, restart_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && n == nil {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return uint64(max(*n, 0)), nil
}
