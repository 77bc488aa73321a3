// Package control is the sidecar's control socket: the HTTP API the agent
// serves on a unix socket in the pod's /run/remora volume (status, backup now,
// a run's progress), the client `remora status` and `remora backup` use, and
// the pod-wide lock that keeps a backup and a restore from running at once.
package control

import (
	"time"

	"remora.dev/remora/repo"
)

// Status is what `remora status` shows.
type Status struct {
	Namespace        string    `json:"namespace"`
	Workload         string    `json:"workload"`
	Driver           string    `json:"driver"`
	Schedule         string    `json:"schedule"`
	ScheduleExpanded string    `json:"schedule_expanded"`
	NextRun          time.Time `json:"next_run"`
	Retention        string    `json:"retention"`
	// RetentionFloor is what retention keeps whatever Retention says (the
	// storage Secret's REMORA_RETENTION_MIN); empty: none.
	RetentionFloor string `json:"retention_floor,omitempty"`
	// SigningKey is the ID of the key that signs manifests; empty: unsigned.
	SigningKey  string         `json:"signing_key,omitempty"`
	Storage     []string       `json:"storage"`
	ConfigError string         `json:"config_error,omitempty"`
	Running     *RunningStatus `json:"running,omitempty"`
	Last        *RunResult     `json:"last,omitempty"`
	LastSuccess time.Time      `json:"last_success,omitzero"`
	SkippedRuns int            `json:"skipped_runs"`
	WAL         *WALStatus     `json:"wal,omitempty"`
	// Drill is remora.dev/drill's schedule; empty: off. LastDrill is the
	// last restore drill the agent ran, and NextDrill when the next runs.
	Drill     string      `json:"drill,omitempty"`
	NextDrill time.Time   `json:"next_drill,omitzero"`
	LastDrill *repo.Drill `json:"last_drill,omitempty"`
}

// WALStatus is the WAL streamer's state, while remora.dev/pitr is on.
type WALStatus struct {
	// Kind is "binlog" for a MySQL or MariaDB binary log; empty for
	// PostgreSQL's WAL.
	Kind         string    `json:"kind,omitempty"`
	Slot         string    `json:"slot"`
	Connected    bool      `json:"connected"`
	Timeline     uint32    `json:"timeline"`
	Stored       string    `json:"stored_lsn"` // everything before it is archived
	LastArchived time.Time `json:"last_archived,omitzero"`
	LagBytes     uint64    `json:"lag_bytes"`
	Gaps         int       `json:"gaps"`
	Error        string    `json:"error,omitempty"`
	// The span a point-in-time restore can reach, as the agent last read
	// it from the first destination (at start, after each physical backup,
	// every ten minutes); zero: none yet.
	WindowFrom time.Time `json:"window_from,omitzero"`
	WindowTo   time.Time `json:"window_to,omitzero"`
	WindowGaps []string  `json:"window_gaps,omitempty"`
}

// Progress is a running backup's progress.
type Progress = repo.ProgressSnapshot

// RunningStatus describes the backup in progress.
type RunningStatus struct {
	Run      int       `json:"run"`
	Trigger  string    `json:"trigger"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Progress Progress  `json:"progress"`
}

// RunResult is what one run of the agent did.
type RunResult struct {
	Run         int       `json:"run"`
	Trigger     string    `json:"trigger"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Seconds     float64   `json:"duration_seconds"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	ID          string    `json:"id,omitempty"`
	Size        int64     `json:"size,omitempty"`
	Databases   []string  `json:"databases,omitempty"`
	StoredIn    []string  `json:"stored_in,omitempty"`
	FailedIn    []string  `json:"failed_in,omitempty"`
	Pruned      int       `json:"pruned,omitempty"`
	Warnings    int       `json:"warnings,omitempty"`
	Interrupted bool      `json:"interrupted,omitempty"`
	// Skipped says why no backup was taken although nothing failed (this
	// pod is not the member that backs up).
	Skipped string `json:"skipped,omitempty"`
}

// Event is one line of a run's progress stream; the last has Done set and
// carries the run's result.
type Event struct {
	Run      int        `json:"run"`
	Seconds  float64    `json:"seconds"`
	Progress Progress   `json:"progress"`
	Done     bool       `json:"done,omitempty"`
	Result   *RunResult `json:"result,omitempty"`
}

// Started answers a request for a backup.
type Started struct {
	Run     int       `json:"run"`
	Started bool      `json:"started"` // false: a run was going on already, and that one is Run
	Since   time.Time `json:"since"`
}
