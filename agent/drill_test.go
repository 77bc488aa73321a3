package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	_ "remora.dev/remora/drivers/files"
	_ "remora.dev/remora/storage/file"
)

// TestAgentDrills: with remora.dev/drill set, a drill runs as a run of its
// own (never beside a backup), restores the newest backup, and shows in the
// status and the metrics; a drill that fails counts as a failure.
func TestAgentDrills(t *testing.T) {
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "a.txt"), []byte("alpha"), 0o644)
	file := filepath.Join(t.TempDir(), "annotations")
	os.WriteFile(file, []byte(`remora.dev/drill="@weekly"`+"\n"), 0o644)
	a, err := New(Config{Namespace: "shop", Workload: "db-0", Driver: "files", Paths: []string{data},
		Storage: []string{"file://" + t.TempDir()}, AnnotationsFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if d := a.Spec().Drill; d == nil || d.String() != "@weekly" {
		t.Fatalf("remora.dev/drill not read: %v", d)
	}
	ctx := context.Background()
	wait := func(why string) *run {
		r, started := a.trigger(ctx, why)
		if !started {
			t.Fatalf("%s: not started", why)
		}
		<-r.done
		return r
	}
	// Nothing to drill yet: the drill fails and says so.
	if r := wait(triggerDrill); r.result.OK {
		t.Fatalf("a drill without a backup passed: %+v", r.result)
	}
	if got := testutil.ToFloat64(a.metrics.drillFailures); got != 1 {
		t.Errorf("%s = %v, want 1", MetricDrillFailures, got)
	}
	b := wait(triggerRequest)
	if !b.result.OK {
		t.Fatalf("backup: %s", b.result.Error)
	}
	r := wait(triggerDrill)
	if !r.result.OK {
		t.Fatalf("drill: %s", r.result.Error)
	}
	st := a.Status()
	if st.Drill != "@weekly" || st.LastDrill == nil || !st.LastDrill.OK || len(st.LastDrill.Checks) == 0 {
		t.Errorf("status does not show the drill: %+v %+v", st.Drill, st.LastDrill)
	}
	if got := testutil.ToFloat64(a.metrics.drillLastSuccess); got != float64(r.started.Unix()) {
		t.Errorf("%s = %v, want %d", MetricDrillLastSuccess, got, r.started.Unix())
	}
	if st.LastSuccess != b.started {
		t.Errorf("last success %v, want the backup's start %v: a drill counted as a backup", st.LastSuccess, b.started)
	}
}
