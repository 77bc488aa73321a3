package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"remora.dev/remora/control"
	rpolicy "remora.dev/remora/repo/retention"
	"remora.dev/remora/sidecar"
)

type statusCommand struct {
	env    *environment
	socket string
	json   bool
}

func (s *statusCommand) Run(ctx context.Context, args []string) error {
	fs := s.env.newFlagSet("status", "status [--json] [--socket PATH]")
	stringFlag(fs, &s.socket, "socket", sidecar.SocketPath, "the agent's control socket")
	choiceBool(fs, &s.json, "json", "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := control.Dial(s.socket)
	if err != nil {
		return fmt.Errorf("%w: is `remora agent` running in this container?", err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if s.json {
		enc := json.NewEncoder(s.env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	w := s.env.stdout
	now := time.Now()
	fmt.Fprintf(w, "workload      %s/%s (%s)\n", st.Namespace, st.Workload, st.Driver)
	sched := st.Schedule
	if st.ScheduleExpanded != st.Schedule {
		sched += " (" + st.ScheduleExpanded + " for this pod)"
	}
	fmt.Fprintf(w, "schedule      %s, UTC\n", sched)
	fmt.Fprintf(w, "next run      %s (in %s)\n", st.NextRun.UTC().Format("2006-01-02 15:04:05"), st.NextRun.Sub(now).Round(time.Second))
	retention := st.Retention
	if strings.HasSuffix(retention, ","+rpolicy.ProvenOption) {
		retention += " (only verified or drilled backups count)"
	}
	if st.RetentionFloor != "" {
		retention += " (never less than " + st.RetentionFloor + ": the storage Secret's REMORA_RETENTION_MIN)"
	}
	fmt.Fprintf(w, "retention     %s\n", retention)
	signing := "off: backups are not signed (see remora keygen)"
	if st.SigningKey != "" {
		signing = "manifests are signed with key " + st.SigningKey
	}
	fmt.Fprintf(w, "signing       %s\n", signing)
	fmt.Fprintf(w, "storage       %s\n", strings.Join(st.Storage, ", "))
	if st.ConfigError != "" {
		fmt.Fprintf(w, "CONFIG ERROR  %s (the last good configuration is in force)\n", oneLine(st.ConfigError))
	}
	if r := st.Running; r != nil {
		fmt.Fprintf(w, "running       run %d (%s) for %s: %s\n", r.Run, r.Trigger, (time.Duration(r.Seconds) * time.Second).String(), progressLine(r.Progress, r.Seconds))
	}
	if l := st.Last; l != nil {
		result := "succeeded"
		switch {
		case l.Skipped != "":
			result = "no backup: " + l.Skipped
		case !l.OK:
			result = "FAILED: " + oneLine(l.Error)
		}
		fmt.Fprintf(w, "last run      %d (%s) at %s, %s, %s\n", l.Run, l.Trigger, l.Started.UTC().Format("2006-01-02 15:04:05"),
			(time.Duration(l.Seconds*10) * time.Second / 10).String(), result)
		if l.ID != "" {
			fmt.Fprintf(w, "              backup %s, %s, databases %s\n", l.ID, humanBytes(l.Size), strings.Join(l.Databases, ","))
		}
	}
	if !st.LastSuccess.IsZero() {
		fmt.Fprintf(w, "last success  %s (%s ago)\n", st.LastSuccess.UTC().Format("2006-01-02 15:04:05"), now.Sub(st.LastSuccess).Round(time.Second))
	} else {
		fmt.Fprintf(w, "last success  none yet\n")
	}
	printDrillStatus(w, st, now)
	if st.SkippedRuns > 0 {
		fmt.Fprintf(w, "skipped runs  %d (a backup was still running)\n", st.SkippedRuns)
	}
	if st.WAL != nil {
		fmt.Fprintf(w, "%-13s %s\n", logLabel(st.WAL), walLine(st.WAL, now))
	}
	return nil
}

// logLabel names the streamed log.
func logLabel(s *control.WALStatus) string {
	if s.Kind == "binlog" {
		return "Binary log"
	}
	return "WAL"
}

// walLine is the WAL streamer's state in one line.
func walLine(s *control.WALStatus, now time.Time) string {
	state := "streaming"
	if !s.Connected {
		state = "RECONNECTING"
		if s.Error != "" {
			state += " (" + oneLine(s.Error) + ")"
		}
	}
	out := fmt.Sprintf("%s through slot %s, timeline %d, archived up to %s", state, s.Slot, s.Timeline, s.Stored)
	if s.Kind == "binlog" {
		out = fmt.Sprintf("%s the binary log, archived up to %s", state, s.Stored)
	}
	if !s.LastArchived.IsZero() {
		out += fmt.Sprintf(" at %s (%s ago)", s.LastArchived.UTC().Format("15:04:05"), now.Sub(s.LastArchived).Round(time.Second))
	}
	if s.LagBytes > 0 {
		out += ", " + humanBytes(int64(s.LagBytes)) + " behind the server"
	}
	if s.Gaps > 0 {
		out += fmt.Sprintf(", %d GAPS (restores cannot cross them)", s.Gaps)
	}
	switch {
	case !s.WindowFrom.IsZero():
		out += fmt.Sprintf("; restorable from %s to %s", s.WindowFrom.Format("2006-01-02 15:04:05"), s.WindowTo.Format("2006-01-02 15:04:05"))
	default:
		out += "; no restorable window yet (it needs a physical backup)"
		if s.Kind == "binlog" {
			out = strings.TrimSuffix(out, "physical backup)") + "backup taken while the binary log is archived)"
		}
	}
	for _, g := range s.WindowGaps {
		out += "; GAP: " + g
	}
	return out
}

func progressLine(p control.Progress, seconds float64) string {
	if p.Object == "" {
		return "starting: checking the storage and the database"
	}
	rate := ""
	if seconds > 0 {
		rate = fmt.Sprintf(", %s/s", humanBytes(int64(float64(p.BytesRead)/seconds)))
	}
	return fmt.Sprintf("%s: %s read, %s stored%s", p.Object, humanBytes(p.BytesRead), humanBytes(p.BytesStored), rate)
}

// printDrillStatus prints remora.dev/drill's schedule and the last drill.
func printDrillStatus(w io.Writer, st *control.Status, now time.Time) {
	if st.Drill != "" {
		fmt.Fprintf(w, "drill         %s, next %s\n", st.Drill, st.NextDrill.UTC().Format("2006-01-02 15:04:05"))
	}
	if d := st.LastDrill; d != nil {
		state := "passed"
		if !d.OK {
			state = "FAILED: " + strings.Join(d.Problems, "; ")
		}
		fmt.Fprintf(w, "last drill    %s (%s ago), %s\n", d.Time.UTC().Format("2006-01-02 15:04:05"), now.Sub(d.Time).Round(time.Second), state)
	}
}
