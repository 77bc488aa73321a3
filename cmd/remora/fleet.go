package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"remora.dev/remora/fleet"
	"remora.dev/remora/sidecar"
)

type fleetCommand struct {
	env           *environment
	c             common
	json          bool
	maxAge        string
	allowUnsigned bool
}

func (f *fleetCommand) Run(ctx context.Context, args []string) error {
	fs := f.env.newFlagSet("fleet", "fleet --storage URL [--json] [--max-age DURATION] [flags]")
	f.flags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("fleet takes no arguments, got %q", fs.Args())
	}
	maxAge, err := parseAge(f.maxAge)
	if err != nil {
		return usage(err)
	}
	log, err := f.c.logger(f.env)
	if err != nil {
		return err
	}
	_, trust, err := f.c.keys()
	if err != nil {
		return err
	}
	trust.AllowUnsigned = f.allowUnsigned
	st, err := f.c.openStorage(ctx, f.env, log)
	if err != nil {
		return err
	}
	if err := st.Check(ctx); err != nil {
		return err
	}
	r, err := fleet.Survey(ctx, st, fleet.Options{Trust: trust, Now: time.Now(), MaxAge: maxAge})
	if err != nil {
		return err
	}
	if f.json {
		enc := json.NewEncoder(f.env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else if err := printFleet(f.env.stdout, r); err != nil {
		return err
	}
	if !trust.Checks() {
		fmt.Fprintln(f.env.stderr, "signatures were not checked: no --verify-key or --signing-key is set")
	}
	return f.verdict(r, maxAge)
}

// flags are those of common that a survey of a whole storage needs: no
// namespace, workload or driver.
func (f *fleetCommand) flags(fs *flag.FlagSet) {
	f.c.storage.values = strings.Fields(os.Getenv(sidecar.EnvStorage))
	fs.Var(&f.c.storage, "storage", "the storage to survey, as a URL (README: Storage URLs); with several, the first")
	stringFlag(fs, &f.c.logFormat, "log-format", "text", "log format: text or json")
	stringFlag(fs, &f.c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	stringFlag(fs, &f.c.signingKey, "signing-key", "", "Ed25519 private key (PEM) whose public half checks signatures ("+envSigningKey+" may hold the key itself)")
	stringFlag(fs, &f.c.verifyKey, "verify-key", "", "Ed25519 public key(s) (PEM) that check signatures: a backup without a good one is shown UNTRUSTED ("+envVerifyKey+" may hold the key itself)")
	choiceBool(fs, &f.json, "json", "print JSON")
	choiceString(fs, &f.maxAge, "max-age", "exit 1 when a workload's last good backup is older, e.g. 26h or 8d")
	allowUnsignedFlag(fs, &f.allowUnsigned)
}

// parseAge reads --max-age: a Go duration (26h, 90m) or whole days (8d).
func parseAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if d, err := strconv.Atoi(n); err == nil && d > 0 {
			return time.Duration(d) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("--max-age %q: want a positive duration such as 26h, 90m or 8d", s)
}

// verdict is the command's error: what is stale, and what could not
// be read.
func (f *fleetCommand) verdict(r *fleet.Report, maxAge time.Duration) error {
	var bad []string
	for _, row := range r.Rows {
		switch {
		case row.Stale != "":
			bad = append(bad, fmt.Sprintf("%s: %s", rowName(row), row.Stale))
		case row.Error != "":
			bad = append(bad, fmt.Sprintf("%s: %s", rowName(row), row.Error))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	what := "could not be read"
	if maxAge > 0 {
		what = "are older than --max-age " + f.maxAge + " or could not be read"
	}
	return fmt.Errorf("%d of %d %s: %s", len(bad), len(r.Rows), what, strings.Join(bad, "; "))
}

func rowName(row fleet.Row) string {
	return fmt.Sprintf("%s/%s %s %s", row.Namespace, row.Workload, row.Driver, row.Method)
}

// printFleet prints the report as a table, then what is wrong, row by row.
func printFleet(w io.Writer, r *fleet.Report) error {
	if len(r.Rows) == 0 {
		fmt.Fprintf(w, "no backups in %s\n", r.Storage)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKLOAD\tDRIVER\tMETHOD\tLAST BACKUP (UTC)\tAGE\tSIZE\tVERIFIED\tDRILLED\tBACKUPS\tPOINT IN TIME (UTC)")
	for _, row := range r.Rows {
		last := "-\t-\t-\t-\t-"
		if b := row.Last; b != nil {
			last = fmt.Sprintf("%s\t%s\t%s\t%s\t%s", b.Time.Format("2006-01-02 15:04"), age(time.Duration(b.AgeSeconds*float64(time.Second))),
				humanBytes(b.Size), strings.ToUpper(b.Verified), strings.ToUpper(b.Drilled))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", row.Namespace, row.Workload, row.Driver, row.Method, last, row.Backups, windowText(row.PITR))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, row := range r.Rows {
		for _, line := range rowNotes(row) {
			fmt.Fprintf(w, "%s: %s\n", rowName(row), line)
		}
	}
	return nil
}

// rowNotes are what the table cannot say of a row.
func rowNotes(row fleet.Row) []string {
	var out []string
	if row.Error != "" {
		out = append(out, "ERROR "+oneLine(row.Error))
	}
	if g := row.LastGood; g != nil && row.Last != nil && g.ID != row.Last.ID {
		out = append(out, fmt.Sprintf("the newest backup failed its check; the newest good one is %s", g.ID))
	}
	for _, d := range row.Damaged {
		out = append(out, fmt.Sprintf("%s %s: %s", strings.ToUpper(d.State), d.ID, oneLine(d.Problem)))
	}
	if w := row.PITR; w != nil {
		for _, g := range w.Gaps {
			out = append(out, "WAL GAP "+g)
		}
	}
	if row.Stale != "" {
		out = append(out, "STALE "+row.Stale)
	}
	return out
}

// windowText is a row's point-in-time window, or "-".
func windowText(w *fleet.Window) string {
	switch {
	case w == nil:
		return "-"
	case w.From != nil:
		return w.From.Format("2006-01-02 15:04") + " to " + w.To.Format("2006-01-02 15:04")
	case w.NoWAL:
		return "no WAL archived"
	}
	return "none (WAL gap)"
}

// age prints a duration as an operator reads an age: 45m, 5h12m, 3d4h.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return "just now"
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}
