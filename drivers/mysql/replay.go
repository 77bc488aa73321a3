package mysql

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"remora.dev/remora/drivers"
)

// ReplayOptions say what a replay of archived binary logs applies.
type ReplayOptions struct {
	Files []string // local binary log files in order; the first holds Start
	Start uint64   // offset in the first file
	// Stop replays only the events before it (the binary log's clock, to
	// the second); zero replays every event.
	Stop time.Time
	// Database replays only the changes to this database's tables (row
	// events name their table's database); Into rewrites them to another
	// name.
	Database string
	Into     string
}

// binlogTool is the replay tool: MariaDB's for a MariaDB server.
func binlogTool(mariadb bool) (string, error) {
	names := []string{"mysqlbinlog", "mariadb-binlog"}
	if mariadb {
		names = []string{"mariadb-binlog", "mysqlbinlog"}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("mysql: mariadb-binlog or mysqlbinlog is needed to replay binary logs: install the MariaDB or MySQL client tools")
}

// Replay applies archived binary log files to the server: the replay
// tool decodes them and the client executes what it prints, stopping at
// the first error. Transactions the replay cut in the middle (at Stop) are
// rolled back when the client's session ends.
func (d *Driver) Replay(ctx context.Context, o ReplayOptions) error {
	if len(o.Files) == 0 {
		return nil
	}
	s, err := d.inspect(ctx)
	if err != nil {
		return err
	}
	tool, err := binlogTool(s.mariadb)
	if err != nil {
		return err
	}
	if !s.mariadb && !strings.Contains(toolVersion(ctx, tool), "MySQL") {
		return fmt.Errorf("mysql: a MySQL server's binary logs are replayed with MySQL's own mysqlbinlog (%s is not): install the MySQL client tools", tool)
	}
	decode := drivers.Command{Path: tool, Args: replayArgs(o, !s.mariadb), Env: drivers.ToolEnv(nil, "TZ=UTC")}
	load := d.command(s.client, "--binary-mode")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var out io.Writer = pw
		var filter *newGTIDs
		if s.mariadb {
			filter = newGTIDFilter(pw)
			out = filter
		}
		err := decode.Run(ctx, nil, out)
		if err == nil && filter != nil {
			err = filter.Close()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	loadErr := load.Run(ctx, pr, io.Discard)
	pr.CloseWithError(errors.New("the client stopped"))
	decodeErr := <-done
	switch {
	case decodeErr != nil:
		return fmt.Errorf("mysql: decoding the binary logs: %w", decodeErr)
	case loadErr != nil:
		return fmt.Errorf("mysql: replaying the binary logs: %w", d.explain(loadErr))
	}
	return nil
}

// replayArgs are the replay tool's arguments. skipGTIDs drops MySQL's GTID
// statements: replayed into the server that wrote them, transactions whose
// GTIDs it has executed would otherwise be skipped without a word.
func replayArgs(o ReplayOptions, skipGTIDs bool) []string {
	args := []string{"--no-defaults", "--start-position=" + strconv.FormatUint(o.Start, 10)}
	if !o.Stop.IsZero() {
		// Event times are seconds: an event at or after Stop is not
		// replayed (the tool reads the time in TZ, set to UTC).
		args = append(args, "--stop-datetime="+o.Stop.UTC().Format(time.DateTime))
	}
	if o.Database != "" {
		args = append(args, "--database="+o.Database)
		if o.Into != "" && o.Into != o.Database {
			args = append(args, "--rewrite-db="+o.Database+"->"+o.Into)
		}
	}
	if skipGTIDs {
		args = append(args, "--skip-gtids")
	}
	return append(append(args, "--"), o.Files...)
}

// gtidSeqPrefix begins the line with which MariaDB's replay tool gives a
// transaction its original GTID sequence number.
const gtidSeqPrefix = "/*M!100001 SET @@session.gtid_seq_no="

var gtidSeqLine = regexp.MustCompile(`^/\*M!100001 SET @@session\.gtid_seq_no=[0-9]{1,20}\*//\*!\*/;$`)

// newGTIDs passes the replay tool's output on without the lines that set
// each transaction's GTID sequence number: replayed, the transactions are
// new ones and the server numbers them after its own, as MySQL's
// --skip-gtids does. Kept, the old numbers come again, behind the server's
// (which gtid_strict_mode refuses, and which replicas would not expect).
type newGTIDs struct {
	w     io.Writer
	line  []byte // the start of a line that may be one to drop
	start bool   // at the start of a line
	pass  bool   // passing the rest of this line through
}

func newGTIDFilter(w io.Writer) *newGTIDs { return &newGTIDs{w: w, start: true} }

func (f *newGTIDs) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if f.start {
			f.start, f.pass, f.line = false, false, f.line[:0]
		}
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		p = p[len(chunk):]
		f.start = i >= 0
		if f.pass {
			if _, err := f.w.Write(chunk); err != nil {
				return 0, err
			}
			continue
		}
		f.line = append(f.line, chunk...)
		if err := f.decide(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// decide drops the line held once it is whole and one to drop, or passes
// it on as soon as it cannot be one.
func (f *newGTIDs) decide() error {
	body := bytes.TrimSuffix(f.line, []byte("\n"))
	complete := len(body) < len(f.line)
	prefix := len(body) >= len(gtidSeqPrefix) && string(body[:len(gtidSeqPrefix)]) == gtidSeqPrefix ||
		len(body) < len(gtidSeqPrefix) && strings.HasPrefix(gtidSeqPrefix, string(body))
	switch {
	case complete && gtidSeqLine.Match(body):
		f.line = f.line[:0]
		return nil
	case prefix && !complete && len(body) < 128:
		return nil // not decided yet
	}
	f.pass = !complete
	_, err := f.w.Write(f.line)
	f.line = f.line[:0]
	return err
}

// Close writes what is held.
func (f *newGTIDs) Close() error {
	if len(f.line) == 0 {
		return nil
	}
	_, err := f.w.Write(f.line)
	return err
}
