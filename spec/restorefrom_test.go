package spec

import (
	"strings"
	"testing"
	"time"
)

// TestParseRestoreFrom: remora.dev/restore-from names a workload and a
// point; a bad value is refused in one line naming the annotation, the
// value and a valid example.
func TestParseRestoreFrom(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		value string
		want  *RestoreFrom // nil: refused
	}{
		{"shop/orders-db-0@latest", &RestoreFrom{Namespace: "shop", Workload: "orders-db-0", Latest: true}},
		{" shop/orders-db-0@2026-11-24T12:00:00Z ", &RestoreFrom{Namespace: "shop", Workload: "orders-db-0", Time: at}},
		{"shop/orders-db-0@2026-11-24T13:00:00+01:00", &RestoreFrom{Namespace: "shop", Workload: "orders-db-0", Time: at}},
		{"shop/web@2026-11-24T12:00:00.5Z", &RestoreFrom{Namespace: "shop", Workload: "web", Time: at.Add(500 * time.Millisecond)}},
		{"shop/orders-db-0", nil},
		{"orders-db-0@latest", nil},
		{"/orders-db-0@latest", nil},
		{"shop/@latest", nil},
		{"shop/a/b@latest", nil},
		{"../x/orders-db-0@latest", nil},
		{"shop/orders db@latest", nil},
		{"shop/orders-db-0@", nil},
		{"shop/orders-db-0@yesterday", nil},
		{"shop/orders-db-0@2026-11-24 12:00", nil},
		{"shop/orders-db-0@latest@latest", nil},
		{"", nil},
	} {
		s, err := Parse(map[string]string{AnnotationRestoreFrom: tc.value}, "shop/db-0")
		if tc.want == nil {
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			if err == nil || !strings.Contains(msg, AnnotationRestoreFrom) || !strings.Contains(msg, strings.TrimSpace(tc.value)) ||
				!strings.Contains(msg, "example") || strings.Contains(msg, "\n") {
				t.Errorf("%q: err = %v; want one line naming the annotation, the value and an example", tc.value, err)
			}
			continue
		}
		got := s.RestoreFrom
		if err != nil || got == nil || got.Namespace != tc.want.Namespace || got.Workload != tc.want.Workload ||
			got.Latest != tc.want.Latest || !got.Time.Equal(tc.want.Time) {
			t.Errorf("%q: %+v, %v; want %+v", tc.value, got, err, tc.want)
		}
	}
	if s, err := Parse(nil, "shop/db-0"); err != nil || s.RestoreFrom != nil {
		t.Errorf("not annotated: %+v, %v", s.RestoreFrom, err)
	}
}

// TestRestoreFromIsPostgresOnly: a restore fills a PostgreSQL data
// directory from physical backups; another driver, annotated or detected,
// is refused.
func TestRestoreFromIsPostgresOnly(t *testing.T) {
	_, err := Parse(map[string]string{AnnotationDriver: "mysql", AnnotationRestoreFrom: "shop/db-0@latest"}, "shop/copy-0")
	if err == nil || !strings.Contains(err.Error(), AnnotationRestoreFrom+`="shop/db-0@latest"`) || !strings.Contains(err.Error(), "example") {
		t.Errorf("annotated mysql: err = %v", err)
	}
	s, err := Parse(map[string]string{AnnotationRestoreFrom: "shop/db-0@latest"}, "shop/copy-0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckRestoreFrom("postgres"); err != nil {
		t.Errorf("postgres: %v", err)
	}
	err = s.CheckRestoreFrom("redis")
	if err == nil || !strings.Contains(err.Error(), AnnotationRestoreFrom) || !strings.Contains(err.Error(), "example") || strings.Contains(err.Error(), "\n") {
		t.Errorf("detected redis: err = %v", err)
	}
}

// TestRestoreFromString: the value a valid annotation gives back is the
// annotation's own form, what the restore's init container is told.
func TestRestoreFromString(t *testing.T) {
	for in, want := range map[string]string{
		"shop/db-0@latest":                    "shop/db-0@latest",
		"shop/db-0@2026-11-24T13:00:00+01:00": "shop/db-0@2026-11-24T12:00:00Z",
		"shop/db-0@2026-11-24T12:00:00.25Z":   "shop/db-0@2026-11-24T12:00:00.25Z",
	} {
		s, err := Parse(map[string]string{AnnotationRestoreFrom: in}, "shop/copy-0")
		if err != nil || s.RestoreFrom.String() != want {
			t.Errorf("%q: %v, %v; want %s", in, s.RestoreFrom, err, want)
		}
	}
}
