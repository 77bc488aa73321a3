package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"remora.dev/remora/agent/backup"
	"remora.dev/remora/drivers"
	"remora.dev/remora/drivers/files"
)

type backupCommand struct {
	env         *environment
	c           common
	databases   string
	compression string
	encryptTo   string
	paths       string
	dumpArgs    string
	retention   string
}

func (b *backupCommand) Run(ctx context.Context, args []string) error {
	fs := b.env.newFlagSet("backup", "backup --driver postgres --dsn URL --storage URL [flags]")
	b.c.addFlags(fs, true)
	stringFlag(fs, &b.databases, "databases", "all", "databases to back up: all, or a comma list")
	stringFlag(fs, &b.paths, "paths", "", "files and directories to archive: with --driver files, or extra files with any driver (comma list)")
	stringFlag(fs, &b.dumpArgs, "dump-args", "", "extra flags for the dump tool, quoted as in a shell; only an allowlist is accepted")
	stringFlag(fs, &b.retention, "retention", "", "after the backup, delete older ones: days=7,weeks=4,months=6 or last=N (default: keep all)")
	stringFlag(fs, &b.compression, "compression", "zstd", "compression: zstd, gzip or none")
	stringFlag(fs, &b.encryptTo, "encrypt-to", os.Getenv("AGE_RECIPIENTS"), "encrypt to these age public keys (age1..., comma-separated; also AGE_RECIPIENTS)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("backup takes no arguments, got %q", fs.Args())}
	}
	b.c.registerSecrets()
	log, err := b.c.logger(b.env)
	if err != nil {
		return err
	}
	dests, err := b.c.destinations(ctx, b.retention)
	if err != nil {
		return err
	}
	paths := drivers.ParseList(b.paths)
	if b.c.dsn == "" && b.c.driver != files.Name {
		return usageError{"no database given: set --dsn or REMORA_DSN"}
	}
	recipients, err := backup.ParseRecipients(b.encryptTo)
	if err != nil {
		return usageError{err.Error()}
	}
	dumpArgs, err := drivers.SplitArgs(b.dumpArgs)
	if err != nil {
		return usageError{err.Error()}
	}
	drv, err := drivers.New(b.c.driver, drivers.Config{DSN: b.c.dsn, Databases: drivers.ParseDatabases(b.databases), Paths: paths, DumpArgs: dumpArgs})
	if err != nil {
		return usageError{err.Error()}
	}
	if len(paths) > 0 && b.c.driver != files.Name {
		if drv, err = files.Extra(drv, paths); err != nil {
			return usageError{err.Error()}
		}
	}
	res, err := backup.Run(ctx, backup.Options{
		Scope: b.c.scope(), Driver: drv, Destinations: dests, Compression: b.compression, Recipients: recipients, Logger: log,
	})
	if res == nil {
		return err
	}
	m := res.Manifest
	var raw int64
	for _, o := range m.Objects {
		raw += o.RawSize
	}
	fmt.Fprintf(b.env.stdout, "backup %s complete: %d databases, %s dumped, %s stored in %.1fs\n",
		m.ID, len(m.Databases), humanBytes(raw), humanBytes(m.Size()), m.DurationSeconds)
	for _, st := range res.Stored {
		fmt.Fprintf(b.env.stdout, "stored in %s under %s\n", st, b.c.scope().Dir(m.Driver, m.ID))
		if ids := res.Pruned[st.String()]; len(ids) > 0 {
			fmt.Fprintf(b.env.stdout, "  retention deleted %d older backups: %s\n", len(ids), strings.Join(ids, ", "))
		}
	}
	for _, f := range res.Failed {
		fmt.Fprintf(b.env.stdout, "FAILED in %s: %v\n", f.Storage, oneLine(f.Err.Error()))
	}
	return err
}
