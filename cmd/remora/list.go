package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"remora.dev/remora/pitr"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

type listCommand struct {
	env  *environment
	c    common
	json bool
}

func (l *listCommand) Run(ctx context.Context, args []string) error {
	fs := l.env.newFlagSet("list", "list [--json] [flags]")
	l.c.addFlags(fs, false)
	l.c.methodChoice(fs)
	choiceBool(fs, &l.json, "json", "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("list takes no arguments, got %q", fs.Args())
	}
	l.c.credentials()
	log, err := l.c.logger(l.env)
	if err != nil {
		return err
	}
	_, trust, err := l.c.keys()
	if err != nil {
		return err
	}
	st, err := l.c.openStorage(ctx, l.env, log)
	if err != nil {
		return err
	}
	entries, err := l.c.list(ctx, st, trust)
	if err != nil {
		return err
	}
	if l.json {
		items := make([]repo.Listing, 0, len(entries))
		for _, e := range entries {
			items = append(items, e.Listing())
		}
		enc := json.NewEncoder(l.env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(items)
	}
	if len(entries) == 0 {
		fmt.Fprintf(l.env.stderr, "no backups of %s/%s in %s\n", l.c.namespace, l.c.workload, st)
		return nil
	}
	tw := tabwriter.NewWriter(l.env.stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tDRIVER\tMETHOD\tTIME (UTC)\tDURATION\tSIZE\tDATABASES\tSIGNED\tVERIFIED")
	for _, e := range entries {
		m := e.Manifest
		if e.Problem != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t%s: %s\n", m.ID, m.Driver, m.MethodName(), damage(&e), e.Problem)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Driver, m.MethodName(), m.Started.Format("2006-01-02 15:04:05"),
			(time.Duration(m.DurationSeconds*10) * time.Second / 10).String(), humanBytes(m.Size()), strings.Join(m.Databases, ","),
			signed(&e, trust), verified(e.Verification))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return l.window(ctx, st, entries, trust)
}

// window prints, when there are backups a point-in-time restore can start
// from (physical ones with the archived WAL, MySQL dumps with the binary
// log), the span it can reach, and any gap.
func (l *listCommand) window(ctx context.Context, st storage.Storage, entries []repo.Entry, trust repo.Trust) error {
	w, has, err := pitr.Reachable(ctx, st, l.c.scope(), entries, trust)
	if err != nil || !has {
		return err
	}
	log, after := "WAL", "the physical backups"
	if len(pitr.Dumps(entries)) > 0 {
		log, after = "binary log", "the backups"
	}
	switch {
	case w.From.IsZero() && len(w.Gaps) == 0:
		fmt.Fprintf(l.env.stdout, "\nPoint in time: no archived %s after %s (remora.dev/pitr is off?): each restores to its own end\n", log, after)
	case w.From.IsZero():
		fmt.Fprintln(l.env.stdout, "\nPoint in time: no window")
	default:
		fmt.Fprintf(l.env.stdout, "\nPoint in time: restorable from %s to %s (UTC)\n", w.From.UTC().Format("2006-01-02 15:04:05"), w.To.UTC().Format("2006-01-02 15:04:05"))
	}
	for _, g := range w.Gaps {
		fmt.Fprintf(l.env.stdout, "%s GAP after the newest backup: %s\n", strings.ToUpper(log), g)
	}
	return nil
}

// damage names what is wrong with an unusable backup.
func damage(e *repo.Entry) string {
	if errors.Is(e.Err(), repo.ErrUntrusted) {
		return "UNTRUSTED"
	}
	return "DAMAGED"
}

func signed(e *repo.Entry, trust repo.Trust) string {
	switch {
	case !trust.Checks():
		return "unchecked"
	case e.Signed:
		return "yes"
	}
	return "no" // accepted by --allow-unsigned
}

func verified(v *repo.Verification) string {
	switch {
	case v == nil:
		return "no"
	case v.OK:
		return "yes " + v.Time.Format("2006-01-02 15:04")
	default:
		return "FAILED " + v.Time.Format("2006-01-02 15:04")
	}
}
