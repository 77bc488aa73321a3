package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"remora.dev/remora/control"
	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/prio"
	"remora.dev/remora/repo"
	"remora.dev/remora/repo/retention"
	"remora.dev/remora/sidecar"
	"remora.dev/remora/storage"
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
	socket      string
	wait        bool
	gentle      gentle
	priority    prio.Priority
}

func (b *backupCommand) Run(ctx context.Context, args []string) error {
	fs := b.env.newFlagSet("backup", "backup --driver postgres --dsn URL --storage URL [flags]")
	b.c.addFlags(fs, true)
	b.c.methodFlag(fs, drivers.MethodLogical)
	stringFlag(fs, &b.databases, "databases", "all", "databases to back up: all, or a comma list")
	stringFlag(fs, &b.paths, "paths", "", "files and directories to archive: with --driver files, or extra files with any driver (comma list)")
	stringFlag(fs, &b.dumpArgs, "dump-args", "", "extra flags for the dump tool, quoted as in a shell; only an allowlist is accepted")
	stringFlag(fs, &b.retention, "retention", "", "after the backup, delete older ones: days=7,weeks=4,months=6 or last=N; add ,proven to count only verified or drilled backups (default: keep all)")
	stringFlag(fs, &b.compression, "compression", repo.DefaultCompression, "compression: zstd, gzip or none")
	stringFlag(fs, &b.encryptTo, "encrypt-to", os.Getenv("AGE_RECIPIENTS"), "encrypt to these age public keys (age1..., comma-separated; also AGE_RECIPIENTS)")
	stringFlag(fs, &b.socket, "socket", sidecar.SocketPath, "the agent's control socket: when an agent answers there, it takes the backup")
	choiceBool(fs, &b.wait, "wait", "through the agent: show progress and wait for the result")
	b.gentle.addFlags(fs, string(prio.Default))
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("backup takes no arguments, got %q", fs.Args())
	}
	if c, err := control.Dial(b.socket); err == nil {
		if err := b.viaAgent(ctx, c); !errors.Is(err, control.ErrNoAgent) {
			return err
		}
		fmt.Fprintf(b.env.stderr, "no agent answers on %s: taking the backup here\n", b.socket)
	}
	release, err := control.Lock(b.socket)
	if err != nil {
		return fmt.Errorf("backup not started: %w in this pod", err)
	}
	defer release()
	b.c.credentials()
	log, err := b.c.logger(b.env)
	if err != nil {
		return err
	}
	opts, err := b.options(ctx, log)
	if err != nil {
		return err
	}
	res, err := repo.Backup(prio.With(ctx, b.priority, log), opts)
	if res != nil {
		b.report(res)
	}
	return err
}

// options checks the flags and opens the destinations.
func (b *backupCommand) options(ctx context.Context, log *slog.Logger) (repo.BackupOptions, error) {
	def, err := retention.ParseOrNone(b.retention)
	if err != nil {
		return repo.BackupOptions{}, usage(err)
	}
	dests, err := repo.OpenDestinations(ctx, b.c.storage.values, def, storage.Options{Logger: log})
	if err != nil {
		return repo.BackupOptions{}, usage(err)
	}
	recipients, err := repo.ParseRecipients(b.encryptTo)
	if err != nil {
		return repo.BackupOptions{}, usage(err)
	}
	dumpArgs, err := drivers.SplitArgs(b.dumpArgs)
	if err != nil {
		return repo.BackupOptions{}, usage(err)
	}
	var maxRate int64
	if b.priority, maxRate, err = b.gentle.parse(); err != nil {
		return repo.BackupOptions{}, err
	}
	if err := b.c.checkMethod(); err != nil {
		return repo.BackupOptions{}, err
	}
	drv, err := drivers.New(b.c.driver, drivers.Config{DSN: b.c.dsn, Databases: drivers.ParseDatabases(b.databases),
		Paths: drivers.ParseList(b.paths), DumpArgs: dumpArgs, Method: b.c.method})
	if err != nil {
		return repo.BackupOptions{}, usage(err)
	}
	signer, trust, err := b.c.keys()
	if err != nil {
		return repo.BackupOptions{}, err
	}
	floor, err := retentionFloor()
	if err != nil {
		return repo.BackupOptions{}, err
	}
	return repo.BackupOptions{Scope: b.c.scope(), Driver: drv, Destinations: dests, Compression: b.compression, Recipients: recipients,
		Signer: signer, Trust: trust, RetentionFloor: floor, Logger: log, MaxRate: maxRate}, nil
}

// report prints what a backup stored, where, and what retention deleted.
func (b *backupCommand) report(res *repo.Result) {
	m := res.Manifest
	var raw int64
	for _, o := range m.Objects {
		raw += o.RawSize
	}
	fmt.Fprintf(b.env.stdout, "backup %s complete: %d databases, %s dumped, %s stored in %.1fs\n",
		m.ID, len(m.Databases), humanBytes(raw), humanBytes(m.Size()), m.DurationSeconds)
	for _, st := range res.Stored {
		fmt.Fprintf(b.env.stdout, "stored in %s under %s\n", st, m.Dir())
		if ids := res.Pruned[st.String()]; len(ids) > 0 {
			fmt.Fprintf(b.env.stdout, "  retention deleted %d older backups: %s\n", len(ids), strings.Join(ids, ", "))
		}
	}
	for _, f := range res.Failed {
		fmt.Fprintf(b.env.stdout, "FAILED in %s: %v\n", f.Storage, oneLine(f.Err.Error()))
	}
}

// viaAgent asks the running agent for a backup, so that two never run at
// once, and with --wait follows it to its end.
func (b *backupCommand) viaAgent(ctx context.Context, c *control.Client) error {
	s, err := c.Backup(ctx)
	if err != nil {
		return err
	}
	if s.Started {
		fmt.Fprintf(b.env.stderr, "backup run %d started by the agent\n", s.Run)
	} else {
		fmt.Fprintf(b.env.stderr, "a backup is already running (run %d, since %s); not starting another\n", s.Run, s.Since.UTC().Format("15:04:05"))
	}
	if !b.wait {
		return nil
	}
	res, err := c.Follow(ctx, s.Run, func(ev control.Event) {
		if !ev.Done {
			fmt.Fprintf(b.env.stderr, "%s  %s\n", (time.Duration(ev.Seconds) * time.Second).String(), progressLine(ev.Progress, ev.Seconds))
		}
	})
	if err != nil {
		return err
	}
	if res.Skipped != "" && res.Error == "" {
		fmt.Fprintf(b.env.stdout, "no backup: %s\n", res.Skipped)
		return nil
	}
	if !res.OK {
		return fmt.Errorf("backup run %d failed: %s", s.Run, res.Error)
	}
	fmt.Fprintf(b.env.stdout, "backup %s complete: %s stored in %.1fs\n", res.ID, humanBytes(res.Size), res.Seconds)
	for _, s := range res.StoredIn {
		fmt.Fprintf(b.env.stdout, "stored in %s\n", s)
	}
	return nil
}
