package mysql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
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
		err := decode.Run(ctx, nil, pw)
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
