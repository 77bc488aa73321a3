package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"remora.dev/remora/drill"
	"remora.dev/remora/repo"
)

type drillCommand struct {
	env           *environment
	c             common
	latest        bool
	identity      string
	allowUnsigned bool
}

func (d *drillCommand) Run(ctx context.Context, args []string) error {
	fs := d.env.newFlagSet("drill", "drill ID|--latest [flags]")
	d.c.addFlags(fs, true)
	d.c.methodChoice(fs)
	choiceBool(fs, &d.latest, "latest", "drill the newest backup")
	identityFlag(fs, &d.identity)
	allowUnsignedFlag(fs, &d.allowUnsigned)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 || len(pos) == 1 && d.latest || len(pos) == 0 && !d.latest {
		return usagef("say which backup to drill: one ID, or --latest")
	}
	d.c.credentials()
	log, err := d.c.logger(d.env)
	if err != nil {
		return err
	}
	ids, err := repo.LoadIdentities(d.identity)
	if err != nil {
		return usage(err)
	}
	signer, trust, err := d.c.keys()
	if err != nil {
		return err
	}
	trust.AllowUnsigned = d.allowUnsigned
	st, err := d.c.openStorage(ctx, d.env, log)
	if err != nil {
		return err
	}
	entries, err := d.c.list(ctx, st, trust)
	if err != nil {
		return err
	}
	sel := repo.Selector{Latest: true}
	if len(pos) == 1 {
		sel = repo.Selector{ID: pos[0]}
	}
	e, err := repo.Select(entries, sel)
	if err != nil {
		return err
	}
	res, err := drill.Run(ctx, st, e, drill.Options{Identities: ids, User: dsnUser(d.c.dsn), Logger: log})
	if err != nil {
		return fmt.Errorf("drill %s: %w", e.Manifest.ID, err)
	}
	// A record nobody can believe is not worth writing: with verify keys
	// only, an unsigned one would be ignored.
	if signer != nil || !trust.Checks() {
		if err := repo.WriteDrill(ctx, st, e, res, signer); err != nil {
			log.Error("the drill's record could not be stored", "error", err)
		}
	}
	printDrill(d.env, e, res)
	warnUnchecked(log, trust)
	if !res.OK {
		return fmt.Errorf("backup %s failed its restore drill: %w", e.Manifest.ID, errors.New(res.Problems[0]))
	}
	return nil
}

// printDrill prints a drill's outcome: one line, then its checks.
func printDrill(env *environment, e *repo.Entry, d repo.Drill) {
	state := "OK"
	if !d.OK {
		state = "FAILED"
	}
	fmt.Fprintf(env.stdout, "%s  drill %s  %.1fs, peak memory %s, %d checks\n", e.Manifest.ID, state, d.Seconds, humanBytes(d.PeakRSSBytes), len(d.Checks))
	for _, c := range d.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(env.stdout, "  %s %s: %s: want %s, got %s\n", mark, c.Object, c.What, c.Want, c.Got)
	}
	for _, p := range d.Problems {
		fmt.Fprintf(env.stdout, "  problem: %s\n", p)
	}
}

// dsnUser is the user a URL-style DSN names, if any.
func dsnUser(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return ""
	}
	return u.User.Username()
}
