package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metric names, as the README lists them.
const (
	MetricLastSuccess   = "remora_backup_last_success_timestamp_seconds"
	MetricLastRun       = "remora_backup_last_run_timestamp_seconds"
	MetricDuration      = "remora_backup_duration_seconds"
	MetricSize          = "remora_backup_size_bytes"
	MetricFailures      = "remora_backup_failures_total"
	MetricRuns          = "remora_backup_runs_total"
	MetricSkipped       = "remora_backup_runs_skipped_total"
	MetricBytesRead     = "remora_backup_bytes_read_total"
	MetricBytesWritten  = "remora_backup_bytes_written_total"
	MetricConfigErrors  = "remora_config_errors_total"
	MetricConfigValid   = "remora_config_valid"
	MetricRunning       = "remora_backup_running"
	MetricNotifyErrors  = "remora_notification_failures_total"
	MetricPartialFailed = "remora_backup_destination_failures_total"
	MetricRetentionStop = "remora_retention_stopped_total"
)

type metrics struct {
	reg                             *prometheus.Registry
	lastSuccess, lastRun, duration  prometheus.Gauge
	size, configValid, running      prometheus.Gauge
	failures, skipped, configErrors prometheus.Counter
	bytesRead, bytesWritten         prometheus.Counter
	notifyErrors, destFailures      prometheus.Counter
	retentionStopped                prometheus.Counter
	runs                            *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	g := func(name, help string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		m.reg.MustRegister(x)
		return x
	}
	c := func(name, help string) prometheus.Counter {
		x := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		m.reg.MustRegister(x)
		return x
	}
	m.lastSuccess = g(MetricLastSuccess, "Start time of the newest successful backup (read from storage at start-up), in Unix seconds.")
	m.lastRun = g(MetricLastRun, "Start time of the last run, successful or not, in Unix seconds.")
	m.duration = g(MetricDuration, "Duration of the last successful backup.")
	m.size = g(MetricSize, "Stored size of the last successful backup.")
	m.configValid = g(MetricConfigValid, "1 if the pod's remora.dev annotations are valid, 0 if the agent runs on its last good configuration.")
	m.running = g(MetricRunning, "1 while a backup runs.")
	m.failures = c(MetricFailures, "Backup runs that failed (a partial failure counts).")
	m.skipped = c(MetricSkipped, "Scheduled runs skipped because a backup was still running.")
	m.configErrors = c(MetricConfigErrors, "Times a changed configuration was rejected.")
	m.bytesRead = c(MetricBytesRead, "Bytes read from the dump tools.")
	m.bytesWritten = c(MetricBytesWritten, "Bytes written to each storage (counted once per backup).")
	m.notifyErrors = c(MetricNotifyErrors, "Notifications that could not be sent.")
	m.destFailures = c(MetricPartialFailed, "Destinations that did not get a backup.")
	m.retentionStopped = c(MetricRetentionStop, "Times retention deleted nothing because a backup lies more than an hour in the future (a clock ran fast).")
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRuns, Help: "Backup runs by result."}, []string{"result"})
	m.reg.MustRegister(m.runs)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.configValid.Set(1)
	return m
}
