package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"remora.dev/remora/repo"
)

type listCommand struct {
	env  *environment
	c    common
	json bool
}

func (l *listCommand) Run(ctx context.Context, args []string) error {
	fs := l.env.newFlagSet("list", "list [--json] [flags]")
	l.c.addFlags(fs, false)
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
	st, err := l.c.openStorage(ctx, l.env, log)
	if err != nil {
		return err
	}
	entries, err := l.c.list(ctx, st)
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
	fmt.Fprintln(tw, "ID\tDRIVER\tTIME (UTC)\tDURATION\tSIZE\tDATABASES\tVERIFIED")
	for _, e := range entries {
		m := e.Manifest
		if e.Problem != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\tDAMAGED: %s\n", m.ID, m.Driver, e.Problem)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Driver, m.Started.Format("2006-01-02 15:04:05"),
			(time.Duration(m.DurationSeconds*10) * time.Second / 10).String(), humanBytes(m.Size()), strings.Join(m.Databases, ","), verified(e.Verification))
	}
	return tw.Flush()
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
