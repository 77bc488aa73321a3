// Package spec reads what a pod says about its backups: the remora.dev/*
// annotations, from the downward-API file the sidecar sees (and, in the
// webhook, from the pod itself). Every error names the annotation, the bad
// value and a valid example.
package spec

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"remora.dev/remora/internal/prio"
	"remora.dev/remora/repo/retention"
	"remora.dev/remora/schedule"
)

// Prefix is the prefix of every Remora annotation.
const Prefix = "remora.dev/"

// Annotations.
const (
	AnnotationInject      = Prefix + "inject"
	AnnotationSchedule    = Prefix + "schedule"
	AnnotationDriver      = Prefix + "driver"
	AnnotationContainer   = Prefix + "container"
	AnnotationDatabases   = Prefix + "databases"
	AnnotationPaths       = Prefix + "paths"
	AnnotationRetention   = Prefix + "retention"
	AnnotationStorage     = Prefix + "storage"
	AnnotationCredentials = Prefix + "credentials"
	AnnotationCompression = Prefix + "compression"
	AnnotationMember      = Prefix + "member"
	AnnotationTimeout     = Prefix + "timeout"
	AnnotationMethod      = Prefix + "method"
	AnnotationPITR        = Prefix + "pitr"
	AnnotationPITRFlush   = Prefix + "pitr-flush"
	AnnotationStatus      = Prefix + "status"
	AnnotationDrill       = Prefix + "drill"
	AnnotationPriority    = Prefix + "priority"
	AnnotationMaxRate     = Prefix + "max-rate"
)

// StatusInjected is the value of AnnotationStatus on a pod the webhook has
// injected: injecting is idempotent.
const StatusInjected = "injected"

// The deadline of a run (remora.dev/timeout): a run still going then is
// stopped and fails, so a dump that hangs (a lock never granted, a server
// that stopped answering) cannot block every later run for good.
const (
	DefaultTimeout = 6 * time.Hour
	minTimeout     = time.Second
	maxTimeout     = 7 * 24 * time.Hour
)

// DefaultStorageSecret is the storage Secret when remora.dev/storage names none.
const DefaultStorageSecret = "remora-storage"

// Spec is the typed form of a pod's annotations, defaults applied.
type Spec struct {
	Schedule    schedule.Schedule
	Driver      string // empty: from the environment (the detected one)
	Container   string
	Databases   []string // nil: all
	Paths       []string
	Retention   retention.Policy
	Storage     []string // Secret names
	Credentials string   // Secret name
	Compression string   // empty: not annotated (the agent's --compression, else zstd)
	Member      string   // any, primary, replica, ordinal-N
	// RestoreFrom is remora.dev/restore-from; nil when not annotated.
	RestoreFrom *RestoreFrom
	Timeout     time.Duration
	Method      string        // logical or physical; empty: not annotated (the agent's --method, else logical)
	PITR        string        // on or off; empty: not annotated (the agent's --pitr, else off)
	PITRFlush   time.Duration // the longest streamed WAL waits before it is stored
	// Drill is when the newest backup is restored into a throwaway server
	// and checked (remora.dev/drill); nil: never (the default).
	Drill *schedule.Schedule
	// Priority is the CPU and I/O priority of a backup's work, drill and
	// verify included (remora.dev/priority); empty: not annotated (the
	// agent's --priority, else low).
	Priority prio.Priority
	// MaxRate caps the bytes per second read from the database
	// (remora.dev/max-rate); 0: not annotated (the agent's --max-rate,
	// else no cap).
	MaxRate int64
}

// The bounds of remora.dev/max-rate: below 1 MiB/s a backup of any size
// would not finish; above 10 GiB/s the cap is no cap.
const (
	minMaxRate = 1 << 20
	maxMaxRate = 10 << 30
)

// ParseMaxRate reads a rate in bytes per second written as a Kubernetes
// quantity: 50Mi, 200M, 1.5Gi.
func ParseMaxRate(v string) (int64, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil || q.CmpInt64(minMaxRate) < 0 || q.CmpInt64(maxMaxRate) > 0 {
		return 0, fmt.Errorf("max rate %q: want bytes per second from 1Mi to 10Gi, as a quantity like 50Mi or 200M", v)
	}
	return q.Value(), nil
}

// Methods are the values of remora.dev/method.
var Methods = []string{"logical", "physical"}

// CheckMethod checks remora.dev/method against the driver the pod backs up
// with (annotated or detected): physical backups are PostgreSQL's.
func (s Spec) CheckMethod(driver string) error {
	if s.Method == "physical" && driver != "postgres" {
		return invalid(AnnotationMethod, s.Method, fmt.Sprintf("physical backups are PostgreSQL's, and this pod backs up with the %s driver", driver), `"logical"`)
	}
	if s.PITR == "on" && driver != "postgres" && driver != "mysql" {
		return invalid(AnnotationPITR, s.PITR, fmt.Sprintf("point-in-time recovery streams PostgreSQL's WAL or MySQL's binary log, and this pod backs up with the %s driver", driver), `"off"`)
	}
	return nil
}

// The bounds of remora.dev/pitr-flush: the longest a partial WAL segment
// stays unstored, which bounds what a crash of the pod loses.
const (
	DefaultPITRFlush = 10 * time.Second
	minPITRFlush     = time.Second
	maxPITRFlush     = time.Hour
)

// Drivers are the values of remora.dev/driver.
var Drivers = []string{"files", "mysql", "postgres", "redis"}

// Compressions are the values of remora.dev/compression.
var Compressions = []string{"zstd", "gzip", "none"}

var (
	memberRE = regexp.MustCompile(`^(any|primary|replica|ordinal-\d{1,5})$`)
	nameRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

// Parse reads the remora.dev/* annotations. seed (namespace/workload) fixes
// the values of H in the schedule. All errors are returned together, in the
// order of fields.
func Parse(ann map[string]string, seed string) (Spec, error) {
	s := Spec{Retention: retention.Default, Member: "any", Storage: []string{DefaultStorageSecret}, Timeout: DefaultTimeout, PITRFlush: DefaultPITRFlush}
	var errs []error
	expr := schedule.Default
	if v, ok := ann[AnnotationSchedule]; ok {
		expr = strings.TrimSpace(v)
	}
	var err error
	if s.Schedule, err = schedule.Parse(expr, seed); err != nil {
		why := err.Error()
		if pe := (*schedule.ParseError)(nil); errors.As(err, &pe) {
			why = pe.Reason
		}
		errs = append(errs, invalid(AnnotationSchedule, expr, why, `"H H * * *"`))
	}
	if v, ok := ann[AnnotationDrill]; ok {
		if err := s.parseDrill(strings.TrimSpace(v), seed); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range fields {
		v, ok := ann[f.key]
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if why := f.set(&s, v); why != "" {
			errs = append(errs, invalid(f.key, v, why, f.example))
		}
	}
	return s, errors.Join(errs...)
}

// parseDrill reads remora.dev/drill: a schedule as remora.dev/schedule
// takes, or "off".
func (s *Spec) parseDrill(v, seed string) error {
	if v == "" || v == "off" {
		return nil
	}
	sch, err := schedule.Parse(v, seed+"/drill")
	if err != nil {
		why := err.Error()
		if pe := (*schedule.ParseError)(nil); errors.As(err, &pe) {
			why = pe.Reason
		}
		return invalid(AnnotationDrill, v, why, `"@weekly" or "H 3 * * 0"`)
	}
	s.Drill = &sch
	return nil
}

func invalid(key, value, why, example string) error {
	return fmt.Errorf("annotation %s=%q: %s (example: %s)", key, value, why, example)
}

// fields are the annotations besides the schedule: each sets its part of a
// Spec from a present value, or says why the value is wrong.
var fields = []struct {
	key, example string
	set          func(s *Spec, v string) (why string)
}{
	{AnnotationInject, `"true"`, func(s *Spec, v string) string { return oneOf(v, "want true or false", "true", "false") }},
	{AnnotationDriver, `"postgres"`, func(s *Spec, v string) string {
		s.Driver = v
		return oneOf(v, "unknown driver; want "+strings.Join(Drivers, ", "), Drivers...)
	}},
	{AnnotationContainer, `"db"`, func(s *Spec, v string) string {
		s.Container = v
		return matches(nameRE, v, "not a container name")
	}},
	{AnnotationDatabases, `"app,billing" or "all"`, func(s *Spec, v string) string {
		if v == "all" {
			return ""
		}
		return eachOf(v, &s.Databases, func(d string) string { return matches(nonEmptyRE, d, "empty name in the list") })
	}},
	{AnnotationPaths, `"/var/lib/app/uploads,/etc/app"`, func(s *Spec, v string) string {
		if v == "" {
			return ""
		}
		return eachOf(v, &s.Paths, func(p string) string {
			if !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
				return fmt.Sprintf("%q is not an absolute path", p)
			}
			return ""
		})
	}},
	{AnnotationRetention, `"days=7,weeks=4,months=6" or "last=10", with ",proven" to count only verified or drilled backups`, func(s *Spec, v string) string {
		p, err := retention.Parse(v)
		s.Retention = p
		if err != nil {
			return "not a retention policy"
		}
		return ""
	}},
	{AnnotationStorage, `"remora-storage,offsite"`, func(s *Spec, v string) string {
		s.Storage = nil
		return eachOf(v, &s.Storage, func(n string) string { return matches(nameRE, n, fmt.Sprintf("%q is not a Secret name", n)) })
	}},
	{AnnotationCredentials, `"db-credentials"`, func(s *Spec, v string) string {
		s.Credentials = v
		return matches(nameRE, v, "not a Secret name")
	}},
	{AnnotationCompression, `"zstd"`, func(s *Spec, v string) string {
		s.Compression = v
		return oneOf(v, "want zstd, gzip or none", Compressions...)
	}},
	{AnnotationMember, `"replica"`, func(s *Spec, v string) string {
		s.Member = v
		return matches(memberRE, v, "want any, primary, replica or ordinal-N")
	}},
	{AnnotationRestoreFrom, restoreFromExample, setRestoreFrom},
	{AnnotationMethod, `"physical"`, func(s *Spec, v string) string {
		s.Method = v
		if s.Driver != "" && s.Driver != "postgres" && v == "physical" {
			return "physical backups are PostgreSQL's; " + AnnotationDriver + " is " + s.Driver
		}
		return oneOf(v, "want logical (dumps) or physical (PostgreSQL base backups)", Methods...)
	}},
	{AnnotationPITR, `"on"`, func(s *Spec, v string) string {
		s.PITR = v
		if s.Driver != "" && s.Driver != "postgres" && s.Driver != "mysql" && v == "on" {
			return "point-in-time recovery streams PostgreSQL's WAL or MySQL's binary log; " + AnnotationDriver + " is " + s.Driver
		}
		return oneOf(v, "want on or off", "on", "off")
	}},
	{AnnotationPITRFlush, `"10s"`, func(s *Spec, v string) string {
		d, err := time.ParseDuration(v)
		if err != nil || d < minPITRFlush || d > maxPITRFlush {
			return "want a duration from 1s to 1h"
		}
		s.PITRFlush = d
		return ""
	}},
	{AnnotationPriority, `"low", "idle" or "normal"`, func(s *Spec, v string) string {
		s.Priority = prio.Priority(v)
		return oneOf(v, "want low (nice 10, best-effort I/O level 7), idle (nice 19, idle I/O) or normal", "low", "idle", "normal")
	}},
	{AnnotationMaxRate, `"50Mi" or "200M"`, func(s *Spec, v string) string {
		r, err := ParseMaxRate(v)
		if err != nil {
			return "want bytes per second from 1Mi to 10Gi, as a quantity like 50Mi or 200M"
		}
		s.MaxRate = r
		return ""
	}},
	{AnnotationTimeout, `"6h" or "90m"`, func(s *Spec, v string) string {
		d, err := time.ParseDuration(v)
		if err != nil || d < minTimeout || d > maxTimeout {
			return "want a duration from 1s to 168h (7 days)"
		}
		s.Timeout = d
		return ""
	}},
}

var nonEmptyRE = regexp.MustCompile(`.`)

func oneOf(v, why string, allowed ...string) string {
	if slices.Contains(allowed, v) {
		return ""
	}
	return why
}

func matches(re *regexp.Regexp, v, why string) string {
	if re.MatchString(v) {
		return ""
	}
	return why
}

// eachOf appends the items of a comma list to out, stopping at the first
// that check refuses.
func eachOf(v string, out *[]string, check func(item string) string) string {
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if why := check(item); why != "" {
			return why
		}
		*out = append(*out, item)
	}
	return ""
}

// ReadFile reads a downward-API file: one key="value" line per entry, the
// value quoted as Go quotes strings (how the kubelet writes it).
func ReadFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, q, ok := strings.Cut(line, "=")
		v, err := strconv.Unquote(q)
		if !ok || err != nil {
			return nil, fmt.Errorf("%s line %d: not key=\"value\"", path, n)
		}
		out[k] = v
	}
	return out, sc.Err()
}
