package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/dustin/go-humanize"

	"remora.dev/remora/agent"
	"remora.dev/remora/agent/notify"
	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/kube"
	"remora.dev/remora/internal/redact"
	"remora.dev/remora/repo"
	"remora.dev/remora/sidecar"
)

type agentCommand struct {
	env         *environment
	c           common
	paths       string
	dumpArgs    string
	compression string
	encryptTo   string
	annotations string
	socket      string
	metricsAddr string
	pitr        string
	pitrSlot    string
	retainWarn  string
	gentle      gentle
}

func (a *agentCommand) Run(ctx context.Context, args []string) error {
	fs := a.env.newFlagSet("agent", "agent [flags]")
	a.flags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	a.c.credentials()
	log, err := a.c.logger(a.env)
	if err != nil {
		return err
	}
	if err := a.c.checkMethod(); err != nil {
		return err
	}
	recipients, err := repo.ParseRecipients(a.encryptTo)
	if err != nil {
		return usage(err)
	}
	dumpArgs, err := drivers.SplitArgs(a.dumpArgs)
	if err != nil {
		return usage(err)
	}
	notifyCfg, err := notify.FromEnv()
	if err != nil {
		return usage(err)
	}
	redact.Add(notifyCfg.Secrets()...)
	signer, trust, err := a.c.keys()
	if err != nil {
		return err
	}
	if signer == nil {
		log.Warn("backups are not signed: without a signing key (" + envSigningKey + " in the storage Secret, or --signing-key), anyone who can write to the storage can alter a backup unnoticed; make one with `remora keygen`")
	}
	floor, err := retentionFloor()
	if err != nil {
		return err
	}
	pitrOn, retainWarn, err := a.pitrFlags()
	if err != nil {
		return err
	}
	priority, maxRate, err := a.gentle.parse()
	if err != nil {
		return err
	}
	ag, err := agent.New(agent.Config{
		PITR: pitrOn, PITRSlot: a.pitrSlot, PITRRetainWarn: retainWarn, Priority: priority, MaxRate: maxRate,
		Signer: signer, Trust: trust, RetentionFloor: floor,
		Pod: os.Getenv(sidecar.EnvPodName), Notify: notifyCfg, Events: podEvents(a.c.namespace, log),
		Namespace: a.c.namespace, Workload: a.c.workload, Driver: a.c.driver, DSN: a.c.dsn,
		Storage: a.c.storage.values, Paths: drivers.ParseList(a.paths), DumpArgs: dumpArgs, Compression: a.compression, Method: a.c.method,
		Recipients: recipients, AnnotationsFile: a.annotations, Socket: a.socket, MetricsAddr: a.metricsAddr, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return ag.Run(ctx)
}

// podEvents reports Kubernetes Events on the agent's pod through the API
// server of the cluster it runs in; nil (with a note in the log) outside one.
func podEvents(namespace string, log *slog.Logger) *agent.Events {
	pod := os.Getenv(sidecar.EnvPodName)
	if pod == "" {
		return nil
	}
	c, err := kube.New(kube.Config{})
	if err != nil {
		log.Info("no Kubernetes Events on the pod: the API server cannot be reached from here", "error", err)
		return nil
	}
	return agent.NewEvents(c, namespace, pod, os.Getenv(sidecar.EnvPodUID), log)
}

// flags defines the agent's flags; their environment twins are what the
// webhook sets in the sidecar.
func (a *agentCommand) flags(fs *flag.FlagSet) {
	a.c.addFlags(fs, true)
	a.c.methodFlag(fs, "")
	a.c.logFormat = "json"
	if v, ok := os.LookupEnv(envName("log-format")); ok {
		a.c.logFormat = v
	}
	stringFlag(fs, &a.paths, "paths", "", "files and directories to archive (remora.dev/paths overrides)")
	stringFlag(fs, &a.dumpArgs, "dump-args", "", "extra flags for the dump tool, from an allowlist")
	stringFlag(fs, &a.compression, "compression", "", "compression when remora.dev/compression is not set: zstd, gzip or none")
	stringFlag(fs, &a.encryptTo, "encrypt-to", os.Getenv("AGE_RECIPIENTS"), "encrypt to these age public keys (also AGE_RECIPIENTS)")
	stringFlag(fs, &a.annotations, "annotations", sidecar.AnnotationsFile, "the pod's annotations, as the downward API writes them")
	stringFlag(fs, &a.socket, "socket", sidecar.SocketPath, "control socket for status and backup")
	stringFlag(fs, &a.pitr, "pitr", "off", "on: stream PostgreSQL's WAL into the storage for point-in-time restores, when remora.dev/pitr is not set")
	stringFlag(fs, &a.pitrSlot, "pitr-slot", agent.DefaultSlot, "the physical replication slot WAL is streamed through (created if missing)")
	stringFlag(fs, &a.retainWarn, "pitr-retain-warn", "1GiB", "warn when the slot holds back more WAL than this on the server (the archive is behind)")
	a.gentle.addFlags(fs, "")
	stringFlag(fs, &a.metricsAddr, "metrics-addr", fmt.Sprintf(":%d", sidecar.MetricsPort), "address of /metrics, /healthz and /readyz (empty: none)")
}

// pitrFlags reads --pitr and --pitr-retain-warn.
func (a *agentCommand) pitrFlags() (bool, uint64, error) {
	if a.pitr != "on" && a.pitr != "off" {
		return false, 0, usagef("--pitr %q: want on or off", a.pitr)
	}
	n, err := humanize.ParseBytes(strings.TrimSpace(a.retainWarn))
	if err != nil || n == 0 {
		return false, 0, usagef("--pitr-retain-warn %q: want a size such as 1GiB", a.retainWarn)
	}
	return a.pitr == "on", n, nil
}
