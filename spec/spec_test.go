package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/internal/prio"
)

func TestParseDefaults(t *testing.T) {
	s, err := Parse(nil, "shop/db-0")
	if err != nil {
		t.Fatal(err)
	}
	if s.Schedule.String() != "H H * * *" || s.Retention.String() != "days=7,weeks=4,months=6" || s.Compression != "" ||
		s.Member != "any" || s.Storage[0] != "remora-storage" || s.Databases != nil || s.Timeout != 6*time.Hour {
		t.Fatalf("%+v", s)
	}
}

// An annotation that says what the default is stays apart from no annotation:
// the agent's --compression applies only to the second.
func TestExplicitDefault(t *testing.T) {
	s, err := Parse(map[string]string{AnnotationCompression: "zstd"}, "shop/db-0")
	if err != nil || s.Compression != "zstd" {
		t.Fatalf("compression %q, %v; want zstd as annotated", s.Compression, err)
	}
}

func TestParseAnnotations(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		valid      bool
	}{
		{AnnotationSchedule, "@every 1h", true},
		{AnnotationSchedule, "H 3 * * *", true},
		{AnnotationSchedule, "every day", false},
		{AnnotationInject, "true", true},
		{AnnotationInject, "yes", false},
		{AnnotationDriver, "mysql", true},
		{AnnotationDriver, "oracle", false},
		{AnnotationDatabases, "app, billing", true},
		{AnnotationDatabases, "app,,b", false},
		{AnnotationPaths, "/var/lib/app,/etc/app", true},
		{AnnotationPaths, "relative/path", false},
		{AnnotationRetention, "last=5", true},
		{AnnotationRetention, "forever", false},
		{AnnotationStorage, "remora-storage,offsite", true},
		{AnnotationStorage, "Bad_Name", false},
		{AnnotationCompression, "gzip", true},
		{AnnotationCompression, "lz4", false},
		{AnnotationMember, "ordinal-0", true},
		{AnnotationMember, "leader", false},
		{AnnotationContainer, "postgres", true},
		{AnnotationCredentials, "db-creds", true},
		{AnnotationTimeout, "90m", true},
		{AnnotationTimeout, "1s", true},
		{AnnotationTimeout, "168h", true},
		{AnnotationTimeout, "169h", false},
		{AnnotationPITR, "on", true},
		{AnnotationPITR, "off", true},
		{AnnotationPITR, "yes", false},
		{AnnotationPITRFlush, "1s", true},
		{AnnotationPITRFlush, "1h", true},
		{AnnotationPITRFlush, "500ms", false},
		{AnnotationPITRFlush, "2h", false},
		{AnnotationMethod, "logical", true},
		{AnnotationMethod, "physical", true},
		{AnnotationMethod, "snapshot", false},
		{AnnotationTimeout, "0s", false},
		{AnnotationTimeout, "-1h", false},
		{AnnotationTimeout, "500ms", false},
		{AnnotationTimeout, "6", false},
		{AnnotationTimeout, "7d", false},
		{AnnotationPriority, "low", true},
		{AnnotationPriority, "idle", true},
		{AnnotationPriority, "normal", true},
		{AnnotationPriority, "high", false},
		{AnnotationPriority, "10", false},
		{AnnotationMaxRate, "50Mi", true},
		{AnnotationMaxRate, "200M", true},
		{AnnotationMaxRate, "1Mi", true},
		{AnnotationMaxRate, "10Gi", true},
		{AnnotationMaxRate, "1M", false},
		{AnnotationMaxRate, "11Gi", false},
		{AnnotationMaxRate, "50MB", false},
		{AnnotationMaxRate, "fast", false},
		{AnnotationMaxRate, "-50Mi", false},
	} {
		_, err := Parse(map[string]string{tc.key: tc.value}, "ns/w")
		if tc.valid && err != nil {
			t.Errorf("%s=%q: %v", tc.key, tc.value, err)
		}
		if !tc.valid {
			if err == nil {
				t.Errorf("%s=%q accepted", tc.key, tc.value)
			} else if msg := err.Error(); !strings.Contains(msg, tc.key) || !strings.Contains(msg, tc.value) || !strings.Contains(msg, "example") {
				t.Errorf("%s=%q: the error must name the annotation, the value and an example: %s", tc.key, tc.value, msg)
			}
		}
	}
}

func TestParseTimeout(t *testing.T) {
	for v, want := range map[string]time.Duration{"90m": 90 * time.Minute, " 2h30m ": 150 * time.Minute, "1s": time.Second, "168h": 7 * 24 * time.Hour} {
		s, err := Parse(map[string]string{AnnotationTimeout: v}, "ns/w")
		if err != nil || s.Timeout != want {
			t.Errorf("%s=%q: %s, %v; want %s", AnnotationTimeout, v, s.Timeout, err, want)
		}
	}
}

func TestParseGentle(t *testing.T) {
	for _, c := range []struct {
		ann  map[string]string
		p    prio.Priority
		rate int64
	}{
		{nil, "", 0}, // not annotated: the agent's flags decide
		{map[string]string{AnnotationPriority: "idle"}, prio.Idle, 0},
		{map[string]string{AnnotationPriority: " normal ", AnnotationMaxRate: "50Mi"}, prio.Normal, 50 << 20},
		{map[string]string{AnnotationMaxRate: "200M"}, "", 200e6},
		{map[string]string{AnnotationMaxRate: "1.5Gi"}, "", 3 << 29},
	} {
		s, err := Parse(c.ann, "ns/w")
		if err != nil || s.Priority != c.p || s.MaxRate != c.rate {
			t.Errorf("%v: priority %q, max rate %d, %v; want %q, %d", c.ann, s.Priority, s.MaxRate, err, c.p, c.rate)
		}
	}
}

func TestReadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "annotations")
	os.WriteFile(p, []byte("kubernetes.io/config.seen=\"2026-11-24T10:00:00Z\"\nremora.dev/schedule=\"H */6 * * *\"\nx=\"a \\\"quoted\\\" \\n value\"\n"), 0o644)
	m, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if m["remora.dev/schedule"] != "H */6 * * *" || m["x"] != "a \"quoted\" \n value" {
		t.Fatalf("%q", m)
	}
	os.WriteFile(p, []byte("broken line\n"), 0o644)
	if _, err := ReadFile(p); err == nil {
		t.Fatal("accepted a broken file")
	}
}

// TestMethodPhysicalIsPostgresOnly: remora.dev/method=physical with another
// driver is refused in one line naming the annotation, the value and a
// valid example, whether the driver is annotated or detected.
func TestMethodPhysicalIsPostgresOnly(t *testing.T) {
	_, err := Parse(map[string]string{AnnotationDriver: "mysql", AnnotationMethod: "physical"}, "shop/db-0")
	if err == nil || !strings.Contains(err.Error(), AnnotationMethod+`="physical"`) || !strings.Contains(err.Error(), "example") {
		t.Errorf("annotated mysql: err = %v", err)
	}
	s, err := Parse(map[string]string{AnnotationMethod: "physical"}, "shop/db-0")
	if err != nil || s.Method != "physical" {
		t.Fatalf("method %q, %v", s.Method, err)
	}
	if err := s.CheckMethod("postgres"); err != nil {
		t.Errorf("postgres: %v", err)
	}
	err = s.CheckMethod("redis")
	if err == nil || !strings.Contains(err.Error(), AnnotationMethod) || !strings.Contains(err.Error(), `example: "logical"`) || strings.Contains(err.Error(), "\n") {
		t.Errorf("detected redis: err = %v", err)
	}
}

// TestPITRIsPostgresOrMySQL: remora.dev/pitr=on with another driver is refused
// in one line, whether the driver is annotated or detected; the flush
// interval defaults to 10s.
func TestPITRIsPostgresOrMySQL(t *testing.T) {
	_, err := Parse(map[string]string{AnnotationDriver: "redis", AnnotationPITR: "on"}, "shop/db-0")
	if err == nil || !strings.Contains(err.Error(), AnnotationPITR+`="on"`) {
		t.Errorf("annotated redis: err = %v", err)
	}
	s, err := Parse(map[string]string{AnnotationPITR: "on"}, "shop/db-0")
	if err != nil || s.PITR != "on" || s.PITRFlush != 10*time.Second {
		t.Fatalf("%q %s, %v", s.PITR, s.PITRFlush, err)
	}
	for _, d := range []string{"postgres", "mysql"} {
		if err := s.CheckMethod(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	if _, err := Parse(map[string]string{AnnotationDriver: "mysql", AnnotationPITR: "on"}, "shop/db-0"); err != nil {
		t.Errorf("annotated mysql: %v", err)
	}
	if err := s.CheckMethod("files"); err == nil || !strings.Contains(err.Error(), AnnotationPITR) || strings.Contains(err.Error(), "\n") {
		t.Errorf("detected files: err = %v", err)
	}
}

// TestDrillAnnotation: remora.dev/drill is off unless set, takes any
// schedule, and a bad one names the annotation.
func TestDrillAnnotation(t *testing.T) {
	for _, tc := range []struct {
		value, want, err string
	}{
		{"", "", ""},
		{"off", "", ""},
		{"@weekly", "@weekly", ""},
		{"H 3 * * 0", "H 3 * * 0", ""},
		{"every tuesday", "", `annotation remora.dev/drill="every tuesday"`},
	} {
		ann := map[string]string{}
		if tc.value != "" {
			ann[AnnotationDrill] = tc.value
		}
		s, err := Parse(ann, "ns/db-0")
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.value, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.value, err)
		case tc.want == "" && s.Drill != nil, tc.want != "" && (s.Drill == nil || s.Drill.String() != tc.want):
			t.Errorf("%q: drill %v, want %q", tc.value, s.Drill, tc.want)
		}
	}
}
