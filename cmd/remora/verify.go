package main

import (
	"context"
	"errors"
	"fmt"

	"remora.dev/remora/agent/backup"
)

type verifyCommand struct {
	env      *environment
	c        common
	all      bool
	identity string
}

func (v *verifyCommand) Run(ctx context.Context, args []string) error {
	fs := v.env.newFlagSet("verify", "verify [ID|--all] [flags]")
	v.c.addFlags(fs, false)
	choiceBool(fs, &v.all, "all", "verify every backup")
	identityFlag(fs, &v.identity)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 || len(pos) == 1 && v.all {
		return usageError{"verify takes one backup ID, or --all, or nothing for the latest backup"}
	}
	v.c.credentials()
	if _, err := v.c.logger(v.env); err != nil {
		return err
	}
	ids, err := backup.LoadIdentities(v.identity)
	if err != nil {
		return usageError{err.Error()}
	}
	st, err := v.c.openStorage(ctx, v.env)
	if err != nil {
		return err
	}
	entries, err := v.c.list(ctx, st)
	if err != nil {
		return err
	}
	var todo []*backup.Entry
	switch {
	case v.all:
		for i := range entries {
			todo = append(todo, &entries[i])
		}
	default:
		sel := backup.Selector{Latest: true}
		if len(pos) == 1 {
			sel = backup.Selector{ID: pos[0]}
		}
		e, err := backup.Select(entries, sel)
		if err != nil {
			return err
		}
		todo = append(todo, e)
	}
	var bad []error
	for _, e := range todo {
		if e.Problem != "" {
			fmt.Fprintf(v.env.stdout, "%s  DAMAGED  %s\n", e.Manifest.ID, e.Problem)
			bad = append(bad, fmt.Errorf("%w: backup %s: %s", backup.ErrCorrupt, e.Manifest.ID, e.Problem))
			continue
		}
		err := backup.Verify(ctx, st, e.Manifest, ids, true)
		switch {
		case err == nil:
			how := ""
			if e.Manifest.Encryption != nil && ids == nil {
				how = " (checksums only: encrypted, no --identity to check the contents)"
			}
			fmt.Fprintf(v.env.stdout, "%s  OK  %d objects, %s%s\n", e.Manifest.ID, len(e.Manifest.Objects), humanBytes(e.Manifest.Size()), how)
		case errors.Is(err, backup.ErrCorrupt):
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
