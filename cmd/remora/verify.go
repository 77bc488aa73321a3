package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/mysql"
	"remora.dev/remora/pitr"
	"remora.dev/remora/repo"
	"remora.dev/remora/storage"
)

type verifyCommand struct {
	env           *environment
	c             common
	all           bool
	allowUnsigned bool
	identity      string
	trust         repo.Trust
}

func (v *verifyCommand) Run(ctx context.Context, args []string) error {
	fs := v.env.newFlagSet("verify", "verify [ID|--all] [flags]")
	v.c.addFlags(fs, false)
	v.c.methodChoice(fs)
	choiceBool(fs, &v.all, "all", "verify every backup")
	identityFlag(fs, &v.identity)
	allowUnsignedFlag(fs, &v.allowUnsigned)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 || len(pos) == 1 && v.all {
		return usagef("verify takes one backup ID, or --all, or nothing for the latest backup")
	}
	v.c.credentials()
	log, err := v.c.logger(v.env)
	if err != nil {
		return err
	}
	ids, err := repo.LoadIdentities(v.identity)
	if err != nil {
		return usage(err)
	}
	signer, trust, err := v.c.keys()
	if err != nil {
		return err
	}
	trust.AllowUnsigned = v.allowUnsigned
	v.trust = trust
	st, err := v.c.openStorage(ctx, v.env, log)
	if err != nil {
		return err
	}
	entries, err := v.c.list(ctx, st, trust)
	if err != nil {
		return err
	}
	todo, err := v.choose(entries, pos)
	if err != nil {
		return err
	}
	// A record nobody can believe is not worth writing: with verify keys
	// only, an unsigned one would be ignored.
	opts := repo.VerifyOptions{Identities: ids, Record: signer != nil || !trust.Checks(), Signer: signer}
	if err := v.verify(ctx, st, todo, opts); err != nil {
		return err
	}
	warnUnchecked(log, trust)
	return nil
}

// choose picks the backups to verify: every one, the one named, or the
// latest.
func (v *verifyCommand) choose(entries []repo.Entry, pos []string) ([]*repo.Entry, error) {
	if v.all {
		todo := make([]*repo.Entry, len(entries))
		for i := range entries {
			todo[i] = &entries[i]
		}
		return todo, nil
	}
	sel := repo.Selector{Latest: true}
	if len(pos) == 1 {
		sel = repo.Selector{ID: pos[0]}
	}
	e, err := repo.Select(entries, sel)
	if err != nil {
		return nil, err
	}
	return []*repo.Entry{e}, nil
}

// verify checks each backup and prints one line for each.
func (v *verifyCommand) verify(ctx context.Context, st storage.Storage, todo []*repo.Entry, opts repo.VerifyOptions) error {
	var bad []error
	for _, e := range todo {
		if err := e.Err(); err != nil {
			fmt.Fprintf(v.env.stdout, "%s  %s  %s\n", e.Manifest.ID, damage(e), e.Problem)
			bad = append(bad, err)
			continue
		}
		err := repo.Verify(ctx, st, e, opts)
		if err == nil {
			err = v.verifyWAL(ctx, st, e, opts)
		}
		switch {
		case err == nil:
			how := ""
			if e.Manifest.Encryption != nil && opts.Identities == nil {
				how = " (checksums only: encrypted, no --identity to check the contents)"
			}
			fmt.Fprintf(v.env.stdout, "%s  OK  %d objects, %s%s\n", e.Manifest.ID, len(e.Manifest.Objects), humanBytes(e.Manifest.Size()), how)
		case errors.Is(err, repo.ErrUntrusted):
			fmt.Fprintf(v.env.stdout, "%s  UNTRUSTED  %s\n", e.Manifest.ID, oneLine(err.Error()))
			bad = append(bad, fmt.Errorf("backup %s: %w", e.Manifest.ID, err))
		case errors.Is(err, repo.ErrCorrupt):
			fmt.Fprintf(v.env.stdout, "%s  CORRUPT  %s\n", e.Manifest.ID, oneLine(err.Error()))
			bad = append(bad, fmt.Errorf("backup %s: %w", e.Manifest.ID, err))
		default:
			return fmt.Errorf("verify %s: %w", e.Manifest.ID, err)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d backups failed verification: %w", len(bad), len(todo), errors.Join(bad...))
	}
	return nil
}

// verifyWAL checks, for a physical backup, the archived WAL after it:
// continuous to the newest file, every file matching its record.
func (v *verifyCommand) verifyWAL(ctx context.Context, st storage.Storage, e *repo.Entry, opts repo.VerifyOptions) error {
	if e.Manifest.Driver == mysql.Name {
		return v.verifyBinlog(ctx, st, e, opts)
	}
	if e.Manifest.Method != drivers.MethodPhysical {
		return nil
	}
	b, err := pitr.BaseOf(e.Manifest)
	if err != nil {
		return fmt.Errorf("%w: %v", repo.ErrCorrupt, err)
	}
	scope := v.c.scope()
	scope.Method = ""
	rep, err := pitr.VerifyChain(ctx, st, scope, v.trust, opts.Identities, b)
	if err != nil {
		return err
	}
	if rep.Files > 0 {
		fmt.Fprintf(v.env.stdout, "%s  WAL OK  %d archived files after it, without a gap, up to %s (archived %s)\n",
			e.Manifest.ID, rep.Files, rep.Last, rep.Until.UTC().Format(time.RFC3339))
	}
	return nil
}

// verifyBinlog checks, for a MySQL dump that recorded its position, the
// archived binary log after it: continuous to the newest piece, every
// piece matching its record and every event its checksum.
func (v *verifyCommand) verifyBinlog(ctx context.Context, st storage.Storage, e *repo.Entry, opts repo.VerifyOptions) error {
	dumps := pitr.Dumps([]repo.Entry{*e})
	if len(dumps) == 0 {
		return nil
	}
	scope := v.c.scope()
	scope.Driver, scope.Method = mysql.Name, ""
	rep, err := pitr.VerifyBinlogs(ctx, st, scope, v.trust, opts.Identities, dumps[0])
	if err != nil {
		return err
	}
	if rep.Files > 0 {
		fmt.Fprintf(v.env.stdout, "%s  BINLOG OK  %d archived pieces after it, without a gap, up to %s (newest event %s)\n",
			e.Manifest.ID, rep.Files, rep.Last, rep.Until.UTC().Format(time.RFC3339))
	}
	return nil
}
