// Package config reads what a pod says about its backups: the remora.dev/*
// annotations, from the downward-API file the sidecar sees (and, in the
// webhook, from the pod itself). Every error names the annotation, the bad
// value and a valid example.
package config

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"remora.dev/remora/agent/retention"
	"remora.dev/remora/agent/schedule"
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
	AnnotationStatus      = Prefix + "status"
)

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
	Compression string
	Member      string // any, primary, replica, ordinal-N
}

var (
	drivers     = []string{"postgres", "mysql", "redis", "files"}
	compression = []string{"zstd", "gzip", "none"}
	memberRE    = regexp.MustCompile(`^(any|primary|replica|ordinal-\d{1,5})$`)
	nameRE      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

// Parse reads the remora.dev/* annotations. seed (namespace/workload) fixes
// the values of H in the schedule. All errors are returned together.
func Parse(ann map[string]string, seed string) (Spec, error) {
	s := Spec{Retention: retention.Default, Compression: "zstd", Member: "any", Storage: []string{"remora-storage"}}
	var errs []error
	bad := func(key, value, why, example string) {
		errs = append(errs, fmt.Errorf("annotation %s=%q: %s (example: %s)", key, value, why, example))
	}
	get := func(key string) (string, bool) {
		v, ok := ann[key]
		return strings.TrimSpace(v), ok
	}

	spec := schedule.Default
	if v, ok := get(AnnotationSchedule); ok {
		spec = v
	}
	sched, err := schedule.Parse(spec, seed)
	if err != nil {
		bad(AnnotationSchedule, spec, strings.TrimPrefix(err.Error(), fmt.Sprintf("schedule %q: ", spec)), `"H H * * *"`)
	}
	s.Schedule = sched

	if v, ok := get(AnnotationInject); ok && v != "true" && v != "false" {
		bad(AnnotationInject, v, "want true or false", `"true"`)
	}
	if v, ok := get(AnnotationDriver); ok {
		if !slices.Contains(drivers, v) {
			bad(AnnotationDriver, v, "unknown driver; want "+strings.Join(drivers, ", "), `"postgres"`)
		}
		s.Driver = v
	}
	if v, ok := get(AnnotationContainer); ok {
		if !nameRE.MatchString(v) {
			bad(AnnotationContainer, v, "not a container name", `"db"`)
		}
		s.Container = v
	}
	if v, ok := get(AnnotationDatabases); ok && v != "all" {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d == "" {
				bad(AnnotationDatabases, v, "empty name in the list", `"app,billing" or "all"`)
				break
			}
			s.Databases = append(s.Databases, d)
		}
	}
	if v, ok := get(AnnotationPaths); ok && v != "" {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
				bad(AnnotationPaths, v, fmt.Sprintf("%q is not an absolute path", p), `"/var/lib/app/uploads,/etc/app"`)
				break
			}
			s.Paths = append(s.Paths, p)
		}
	}
	if v, ok := get(AnnotationRetention); ok {
		p, err := retention.Parse(v)
		if err != nil {
			bad(AnnotationRetention, v, "not a retention policy", `"days=7,weeks=4,months=6" or "last=10"`)
		}
		s.Retention = p
	}
	if v, ok := get(AnnotationStorage); ok {
		s.Storage = nil
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); !nameRE.MatchString(n) {
				bad(AnnotationStorage, v, fmt.Sprintf("%q is not a Secret name", n), `"remora-storage,offsite"`)
				break
			}
			s.Storage = append(s.Storage, n)
		}
	}
	if v, ok := get(AnnotationCredentials); ok {
		if !nameRE.MatchString(v) {
			bad(AnnotationCredentials, v, "not a Secret name", `"db-credentials"`)
		}
		s.Credentials = v
	}
	if v, ok := get(AnnotationCompression); ok {
		if !slices.Contains(compression, v) {
			bad(AnnotationCompression, v, "want zstd, gzip or none", `"zstd"`)
		}
		s.Compression = v
	}
	if v, ok := get(AnnotationMember); ok {
		if !memberRE.MatchString(v) {
			bad(AnnotationMember, v, "want any, primary, replica or ordinal-N", `"replica"`)
		}
		s.Member = v
	}
	return s, errors.Join(errs...)
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
