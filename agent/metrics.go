package agent

import (
	"time"

	"remora.dev/remora/schedule"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metric names, as the README lists them.
const (
	MetricLastSuccess   = "remora_backup_last_success_timestamp_seconds"
	MetricLastRun       = "remora_backup_last_run_timestamp_seconds"
	MetricLastFailure   = "remora_backup_last_failure_timestamp_seconds"
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
	MetricWALStreaming  = "remora_wal_streaming"
	MetricWALArchived   = "remora_wal_last_archived_timestamp_seconds"
	MetricWALLagBytes   = "remora_wal_archive_lag_bytes"
	MetricWALLagSeconds = "remora_wal_archive_lag_seconds"
	MetricWALRetained   = "remora_wal_slot_retained_bytes"
	MetricWALGaps       = "remora_wal_gaps_total"

	MetricDrillLastSuccess = "remora_drill_last_success_timestamp_seconds"
	MetricDrillLastRun     = "remora_drill_last_run_timestamp_seconds"
	MetricDrillFailures    = "remora_drill_failures_total"
	MetricDrillDuration    = "remora_drill_duration_seconds"
	// MetricScheduleInterval is the longest gap between two scheduled
	// runs: a backup older than that (and a run's duration) missed one.
	MetricScheduleInterval = "remora_backup_schedule_interval_seconds"
)

type metrics struct {
	reg                             *prometheus.Registry
	lastSuccess, lastRun, duration  prometheus.Gauge
	size, configValid, running      prometheus.Gauge
	failures, skipped, configErrors prometheus.Counter
	bytesRead, bytesWritten         prometheus.Counter
	notifyErrors, destFailures      prometheus.Counter
	retentionStopped                prometheus.Counter
	lastFailure                     prometheus.Gauge
	slotRetained                    prometheus.Gauge
	runs                            *prometheus.CounterVec
	drillLastSuccess, drillLastRun  prometheus.Gauge
	drillDuration                   prometheus.Gauge
	drillFailures                   prometheus.Counter
	scheduleInterval                *prometheus.GaugeVec // no labels: absent for a schedule that never runs
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
	m.lastFailure = g(MetricLastFailure, "Start time of the newest failed run, in Unix seconds (0: none since the agent started); after the last success, the last run failed.")
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
	m.slotRetained = g(MetricWALRetained, "WAL the replication slot holds back on the server, in bytes (read every minute while WAL streaming is on).")
	m.drillLastSuccess = g(MetricDrillLastSuccess, "Start time of the last restore drill that passed, in Unix seconds.")
	m.drillLastRun = g(MetricDrillLastRun, "Start time of the last restore drill, passed or not, in Unix seconds.")
	m.drillDuration = g(MetricDrillDuration, "Duration of the last restore drill that passed.")
	m.drillFailures = c(MetricDrillFailures, "Restore drills that failed: the backup did not restore, or did not match its dump.")
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRuns, Help: "Backup runs by result."}, []string{"result"})
	m.reg.MustRegister(m.runs)
	m.scheduleInterval = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricScheduleInterval,
		Help: "The longest time between two consecutive runs of the schedule in force, in seconds; absent when it never runs."}, nil)
	m.reg.MustRegister(m.scheduleInterval)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.configValid.Set(1)
	return m
}

// unixSeconds is t as the timestamp gauges give it: in seconds, with their
// fractions, so that of two runs started within one second the later is
// still the newer.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// setSchedule sets the schedule interval metric for s.
func (m *metrics) setSchedule(s schedule.Schedule) {
	d, ok := s.MaxInterval()
	if !ok {
		m.scheduleInterval.Reset()
		return
	}
	m.scheduleInterval.WithLabelValues().Set(d.Seconds())
}

// walFrom registers the WAL streamer's metrics, read from stats at each
// scrape; they are absent while no streamer runs.
func (m *metrics) walFrom(stats func() (logStats, bool)) {
	m.reg.MustRegister(walCollector{stats: stats, descs: map[string]*prometheus.Desc{
		MetricWALStreaming:  prometheus.NewDesc(MetricWALStreaming, "1 while the WAL streamer is connected to the server, 0 while it reconnects.", nil, nil),
		MetricWALArchived:   prometheus.NewDesc(MetricWALArchived, "When the newest WAL (segment or partial) was stored in every destination, in Unix seconds.", nil, nil),
		MetricWALLagBytes:   prometheus.NewDesc(MetricWALLagBytes, "WAL the server has written that the archive does not hold yet, in bytes.", nil, nil),
		MetricWALLagSeconds: prometheus.NewDesc(MetricWALLagSeconds, "Seconds since WAL was last stored, while the archive is behind the server; 0 when it is not.", nil, nil),
		MetricWALGaps:       prometheus.NewDesc(MetricWALGaps, "Times the server no longer had WAL the archive needed (a slot dropped or recreated): restores cannot cross such a gap.", nil, nil),
	}})
}

// walCollector reads the streamer's progress at scrape time.
type walCollector struct {
	stats func() (logStats, bool)
	descs map[string]*prometheus.Desc
}

func (c walCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c walCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.stats()
	if !ok {
		return
	}
	gauge := func(name string, v float64) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v)
	}
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	gauge(MetricWALStreaming, connected)
	if !st.StoredAt.IsZero() {
		gauge(MetricWALArchived, float64(st.StoredAt.UnixNano())/1e9)
	}
	lag := st.LagBytes
	gauge(MetricWALLagBytes, float64(lag))
	lagSeconds := 0.0
	if lag > 0 && !st.StoredAt.IsZero() {
		lagSeconds = time.Since(st.StoredAt).Seconds()
	}
	gauge(MetricWALLagSeconds, lagSeconds)
	ch <- prometheus.MustNewConstMetric(c.descs[MetricWALGaps], prometheus.CounterValue, float64(st.Gaps))
}
