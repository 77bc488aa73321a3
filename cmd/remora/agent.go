package main

import (
	"context"
	"fmt"
	"os"

	"remora.dev/remora/agent"
	"remora.dev/remora/agent/backup"
	"remora.dev/remora/agent/notify"
	"remora.dev/remora/drivers"
	"remora.dev/remora/internal/redact"
)

const (
	defaultSocket      = "/run/remora/agent.sock"
	defaultAnnotations = "/etc/remora/podinfo/annotations"
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
}

func (a *agentCommand) Run(ctx context.Context, args []string) error {
	fs := a.env.newFlagSet("agent", "agent [flags]")
	a.c.addFlags(fs, true)
	a.c.logFormat = "json"
	if v, ok := os.LookupEnv(envName("log-format")); ok {
		a.c.logFormat = v
	}
	stringFlag(fs, &a.paths, "paths", "", "files and directories to archive (remora.dev/paths overrides)")
	stringFlag(fs, &a.dumpArgs, "dump-args", "", "extra flags for the dump tool, from an allowlist")
	stringFlag(fs, &a.compression, "compression", "", "compression when remora.dev/compression is not set: zstd, gzip or none")
	stringFlag(fs, &a.encryptTo, "encrypt-to", os.Getenv("AGE_RECIPIENTS"), "encrypt to these age public keys (also AGE_RECIPIENTS)")
	stringFlag(fs, &a.annotations, "annotations", defaultAnnotations, "the pod's annotations, as the downward API writes them")
	stringFlag(fs, &a.socket, "socket", defaultSocket, "control socket for status and backup")
	stringFlag(fs, &a.metricsAddr, "metrics-addr", ":9464", "address of /metrics, /healthz and /readyz (empty: none)")
	if err := parse(fs, args); err != nil {
		return err
	}
	a.c.credentials()
	log, err := a.c.logger(a.env)
	if err != nil {
		return err
	}
	recipients, err := backup.ParseRecipients(a.encryptTo)
	if err != nil {
		return usageError{err.Error()}
	}
	dumpArgs, err := drivers.SplitArgs(a.dumpArgs)
	if err != nil {
		return usageError{err.Error()}
	}
	notifyCfg, err := notify.FromEnv()
	if err != nil {
		return usageError{err.Error()}
	}
	redact.Add(notifyCfg.Secrets()...)
	ag, err := agent.New(agent.Config{
		Pod: os.Getenv("REMORA_POD_NAME"), Notify: notifyCfg,
		Namespace: a.c.namespace, Workload: a.c.workload, Driver: a.c.driver, DSN: a.c.dsn,
		Storage: a.c.storage.values, Paths: drivers.ParseList(a.paths), DumpArgs: dumpArgs, Compression: a.compression,
		Recipients: recipients, AnnotationsFile: a.annotations, Socket: a.socket, MetricsAddr: a.metricsAddr, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return ag.Run(ctx)
}
