package binlog_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"remora.dev/remora/drivers/mysql/binlog"
	"remora.dev/remora/internal/testenv"
)

// twoFiles loads a server with a rotation in the middle and streams all of
// it once, to learn the events' positions.
func twoFiles(t *testing.T) (*testenv.MariaDB, *files) {
	t.Helper()
	m := startServer(t)
	m.SQL(t, "CREATE DATABASE IF NOT EXISTS test")
	writeLoad(t, m, 1)
	m.SQL(t, "FLUSH BINARY LOGS")
	writeLoad(t, m, 2)
	s, err := dial(t, m, "tcp").Dump(context.Background(), replicaID, "mysql-bin.000001", 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var f files
	streamTo(t, s, m, &f)
	return m, &f
}

// TestResume starts dumps at a file's start, in its middle, at the end of a
// finished file and in the middle of the next: each yields the file's bytes
// from that offset on, and no event the server sends only to set the
// stream up.
func TestResume(t *testing.T) {
	m, all := twoFiles(t)
	var mid, end, mid2 binlog.Event
	for i, ev := range all.all {
		switch {
		case ev.File == "mysql-bin.000001" && i == 4:
			mid = ev
		case ev.File == "mysql-bin.000001" && ev.EndOfFile:
			end = ev
		case ev.File == "mysql-bin.000002" && ev.Pos > 4 && mid2.Pos == 0 && i > len(all.all)/2+3:
			mid2 = ev
		}
	}
	tests := []struct {
		name  string
		file  string
		pos   uint64
		first binlog.Event // File, Pos, NewFile, EndOfFile of the first event
	}{
		{"file start", "mysql-bin.000001", 4, binlog.Event{File: "mysql-bin.000001", Pos: 4, NewFile: true}},
		{"mid file", mid.File, mid.Pos, binlog.Event{File: mid.File, Pos: mid.Pos}},
		{"end of a finished file", end.File, end.End(), binlog.Event{File: end.File, Pos: end.End(), EndOfFile: true}},
		{"mid next file", mid2.File, mid2.Pos, binlog.Event{File: mid2.File, Pos: mid2.Pos}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := dial(t, m, "unix").Dump(context.Background(), replicaID, tt.file, tt.pos, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var f files
			streamTo(t, s, m, &f)
			got := f.all[0]
			if got.File != tt.first.File || got.Pos != tt.first.Pos || got.NewFile != tt.first.NewFile || got.EndOfFile != tt.first.EndOfFile {
				t.Errorf("first event %s:%d new %v end %v, want %s:%d new %v end %v", got.File, got.Pos, got.NewFile, got.EndOfFile,
					tt.first.File, tt.first.Pos, tt.first.NewFile, tt.first.EndOfFile)
			}
			if tt.first.EndOfFile && len(got.Raw) != 0 {
				t.Errorf("the end of a finished file comes with %d bytes", len(got.Raw))
			}
			sameAsDisk(t, m, &f)
		})
	}
}

// TestServerRestart: the server stops (cleanly, or killed) while a replica
// waits for events; the replica reconnects from the end of what it stored
// and, after the restart, the files it rebuilt are the server's: no gap, no
// event twice.
func TestServerRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "clean shutdown", true: "killed"}[crash]
		t.Run(name, func(t *testing.T) {
			m, f := twoFiles(t)
			old := f.last.File
			s, err := dial(t, m, "tcp").Dump(context.Background(), replicaID, f.last.File, f.last.End(), 0)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			events := make(chan binlog.Event, 16)
			go func() {
				for {
					ev, err := s.Next()
					if err != nil {
						done <- err
						close(events)
						return
					}
					events <- ev
				}
			}()
			if crash {
				m.Kill()
				f.crashed = map[string]bool{f.last.File: true}
			}
			m.Restart(t)
			for ev := range events {
				f.add(t, ev)
			}
			if err := <-done; err == nil {
				t.Fatal("the stream went on across a server restart")
			}
			s.Close()
			s, err = dial(t, m, "tcp").Dump(context.Background(), replicaID, f.last.File, f.last.End(), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			writeLoad(t, m, 3)
			streamTo(t, s, m, f)
			sameAsDisk(t, m, f)
			checkTransactions(t, f.all)
			checkFileEnd(t, f, old, crash)
		})
	}
}

// TestCancel: ending the context makes a Next blocked on an idle server
// return.
func TestCancel(t *testing.T) {
	m := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := dial(t, m, "tcp").Dump(ctx, replicaID, "mysql-bin.000001", 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var f files
	streamTo(t, s, m, &f)
	done := make(chan error)
	go func() {
		_, err := s.Next()
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}
}

// checkFileEnd: a file the server closed ends with its stop event; a file of
// a crashed server with an EndOfFile event without bytes.
func checkFileEnd(t *testing.T, f *files, file string, crash bool) {
	t.Helper()
	for _, ev := range f.all {
		if ev.File != file || !ev.EndOfFile {
			continue
		}
		if crash && len(ev.Raw) != 0 || !crash && ev.Type != 3 {
			t.Errorf("%s ends with an event of type %d and %d bytes", file, ev.Type, len(ev.Raw))
		}
		return
	}
	t.Errorf("no end of %s", file)
}

// TestHeartbeat: on an idle server the heartbeats are consumed and Next
// returns the next event of the file once there is one.
func TestHeartbeat(t *testing.T) {
	m := startServer(t)
	s, err := dial(t, m, "tcp").Dump(context.Background(), replicaID, "mysql-bin.000001", 4, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var f files
	streamTo(t, s, m, &f)
	m.SQL(t, "DO SLEEP(0.3)") // idle: the server sends heartbeats
	m.SQL(t, "CREATE DATABASE hb")
	ev, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	if ev.Pos != f.last.End() || ev.GTID == "" {
		t.Fatalf("after the heartbeats: %s:%d gtid %q, want the GTID event at %d", ev.File, ev.Pos, ev.GTID, f.last.End())
	}
}
