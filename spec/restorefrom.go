package spec

import (
	"fmt"
	"strings"
	"time"

	"remora.dev/remora/repo"
)

// AnnotationRestoreFrom asks for a new pod's empty PostgreSQL data
// directory to be recovered, before the database starts, from another
// workload's physical backups and WAL archive:
// <namespace>/<workload>@<RFC 3339 time|latest>.
const AnnotationRestoreFrom = Prefix + "restore-from"

const restoreFromExample = `"shop/orders-db-0@2026-11-24T12:00:00Z" or "shop/orders-db-0@latest"`

// RestoreFrom is what remora.dev/restore-from names: whose backups, and
// the point to recover to.
type RestoreFrom struct {
	Namespace string
	Workload  string
	Time      time.Time // UTC; zero when Latest
	Latest    bool      // everything the WAL archive holds
	value     string    // as annotated, for errors
}

// String is the annotation's value, the time in UTC.
func (r *RestoreFrom) String() string {
	point := "latest"
	if !r.Latest {
		point = r.Time.Format(time.RFC3339Nano)
	}
	return r.Namespace + "/" + r.Workload + "@" + point
}

// setRestoreFrom reads remora.dev/restore-from into s, or says why it is
// wrong.
func setRestoreFrom(s *Spec, v string) string {
	if s.Driver != "" && s.Driver != "postgres" {
		return "a restore recovers a PostgreSQL data directory from physical backups; " + AnnotationDriver + " is " + s.Driver
	}
	scope, point, ok := strings.Cut(v, "@")
	if !ok {
		return "want <namespace>/<workload>@<time or latest>"
	}
	ns, workload, ok := strings.Cut(scope, "/")
	if !ok || (repo.Scope{Namespace: ns, Workload: workload, Driver: "postgres"}).Validate() != nil {
		return fmt.Sprintf("%q is not <namespace>/<workload>: each of letters, digits, '.', '_' or '-'", scope)
	}
	r := &RestoreFrom{Namespace: ns, Workload: workload, Latest: point == "latest", value: v}
	if !r.Latest {
		t, err := time.Parse(time.RFC3339, point)
		if err != nil {
			return fmt.Sprintf("%q after the @: want latest or an RFC 3339 time", point)
		}
		r.Time = t.UTC()
	}
	s.RestoreFrom = r
	return ""
}

// CheckRestoreFrom checks remora.dev/restore-from against the driver the
// pod backs up with (annotated or detected): only a PostgreSQL data
// directory is recovered.
func (s Spec) CheckRestoreFrom(driver string) error {
	if s.RestoreFrom != nil && driver != "postgres" {
		return invalid(AnnotationRestoreFrom, s.RestoreFrom.value,
			fmt.Sprintf("a restore recovers a PostgreSQL data directory from physical backups, and this pod backs up with the %s driver", driver), restoreFromExample)
	}
	return nil
}
