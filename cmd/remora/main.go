// Command remora backs up databases: as a sidecar agent in a Kubernetes pod,
// and as a CLI that lists, verifies and restores backups.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	_ "remora.dev/remora/drivers/files"
	_ "remora.dev/remora/drivers/mysql"
	_ "remora.dev/remora/drivers/postgres"
	_ "remora.dev/remora/drivers/redis"
	"remora.dev/remora/internal/redact"
	"remora.dev/remora/repo"
	"remora.dev/remora/sidecar"
	_ "remora.dev/remora/storage/azblob"
	_ "remora.dev/remora/storage/file"
	_ "remora.dev/remora/storage/ftp"
	_ "remora.dev/remora/storage/gcs"
	_ "remora.dev/remora/storage/s3"
	_ "remora.dev/remora/storage/sftp"
	_ "remora.dev/remora/storage/smb"
	_ "remora.dev/remora/storage/webdav"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1 // the command failed
	exitUsage   = 2 // bad command line
	exitCorrupt = 3 // stored data does not match its manifest, or its signature is missing or wrong
)

const usageText = `remora backs up PostgreSQL, MySQL/MariaDB, Redis and files to S3-compatible storage or a local volume.

Usage:
  remora agent    [flags]             the sidecar: backs up on the pod's schedule
  remora status                       what the agent is doing
  remora backup   [--wait] [flags]    take a backup now (through the agent, if one runs here)
  remora list     [--json]            list backups
  remora fleet    --storage URL [--json] [--max-age DURATION]
                                      every workload's newest backup in a storage, its proof and PITR window
  remora verify   [ID|--all]          download backups and check every checksum
  remora drill    ID|--latest         restore a backup into a throwaway server and check it
  remora restore  ID|--latest|--before TIME [--database NAME] [--into NAME] [--yes]
  remora restore  --data-dir DIR [ID|--latest|--to-time TIME|--to-lsn LSN|--to-latest]
                                      PostgreSQL: a data directory from a physical backup, to a point in time
  remora wal-fetch FILE DEST          one archived WAL file, checked (a restore_command for PostgreSQL)
  remora keygen   --out FILE          make the key pair that signs and checks backups
  remora webhook  [flags]             the admission webhook that injects the sidecar
  remora version                      print the version

Every command takes --help. Every flag has an environment twin: --dsn is
REMORA_DSN, --storage is REMORA_STORAGE, and so on.

Exit status: 0 success, 1 failure, 2 bad usage, 3 a backup failed its checksums
or its signature.
`

func main() {
	// Most of what remora holds is a few large buffers (upload parts, the
	// compression window) that the collector scans cheaply; collecting more
	// often keeps the peak resident size close to them.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stdout, stderr := redact.Writer(os.Stdout), redact.Writer(os.Stderr)
	stopProfile := startProfile(os.Getenv("REMORA_CPUPROFILE"), stderr)
	err := run(ctx, os.Args[1:], stdout, stderr)
	stopProfile()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("interrupted by a signal: %w", err)
	}
	stop()
	os.Exit(report(err, stderr))
}

// startProfile writes a CPU profile of the whole command to path, if set
// (for `go tool pprof`); it returns the function that ends it.
func startProfile(path string, stderr io.Writer) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(stderr, "remora: REMORA_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// command is one subcommand.
type command interface {
	Run(ctx context.Context, args []string) error
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return usagef("no command given")
	}
	// Mask the secrets the environment holds before anything is printed.
	redact.AddURLPassword(os.Getenv(sidecar.EnvDSN))
	// A private key in the environment, whole and line by line.
	redact.Add(os.Getenv(envSigningKey))
	for _, line := range strings.Fields(os.Getenv(envSigningKey)) {
		if len(line) >= 20 {
			redact.Add(line)
		}
	}
	redact.Add(os.Getenv("PGPASSWORD"), os.Getenv(sidecar.EnvDBPassword), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN"),
		os.Getenv("REMORA_SMTP_PASSWORD"), os.Getenv("REMORA_NOTIFY_WEBHOOK_URL"))
	redact.Add(os.Getenv("REMORA_SFTP_PASSWORD"), os.Getenv("REMORA_SFTP_KEY")) // the SFTP storage's password and private key
	redact.Add(os.Getenv("REMORA_GCS_CREDENTIALS"))                             // a GCS service account key (storage/gcs)
	env := &environment{stdout: stdout, stderr: stderr}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	newCmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprint(stderr, usageText)
		return usagef("unknown command %q", args[0])
	}
	return newCmd(env).Run(ctx, args[1:])
}

// commands are the subcommands, by name: a file each.
var commands = map[string]func(*environment) command{
	"agent":     func(e *environment) command { return &agentCommand{env: e} },
	"backup":    func(e *environment) command { return &backupCommand{env: e} },
	"drill":     func(e *environment) command { return &drillCommand{env: e} },
	"fleet":     func(e *environment) command { return &fleetCommand{env: e} },
	"keygen":    func(e *environment) command { return &keygenCommand{env: e} },
	"list":      func(e *environment) command { return &listCommand{env: e} },
	"restore":   func(e *environment) command { return &restoreCommand{env: e} },
	"status":    func(e *environment) command { return &statusCommand{env: e} },
	"verify":    func(e *environment) command { return &verifyCommand{env: e} },
	"wal-fetch": func(e *environment) command { return &walFetchCommand{env: e} },
	"version":   func(e *environment) command { return &versionCommand{env: e} },
	"webhook":   func(e *environment) command { return &webhookCommand{env: e} },
}

// usageError is a mistake on the command line (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usage marks err as a mistake on the command line.
func usage(err error) error { return usageError{err} }

// usagef is a mistake on the command line, described.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// report prints err as one line and returns the exit code.
func report(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	msg := redact.String(oneLine(err.Error()))
	fmt.Fprintf(stderr, "remora: %s\n", msg)
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, repo.ErrCorrupt), errors.Is(err, repo.ErrUntrusted):
		return exitCorrupt
	}
	return exitFailed
}

func oneLine(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' {
			out = append(out, ';', ' ')
			continue
		}
		out = append(out, r)
	}
	return string(out)
}
