package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/spec"
	"remora.dev/remora/storage"
	_ "remora.dev/remora/storage/file"
)

// TestRunDeadline: a run that cannot finish (pg_dump waits for a lock that
// another session holds until the test ends) is stopped at its
// remora.dev/timeout and fails saying so, and leaves nothing in the storage.
func TestRunDeadline(t *testing.T) {
	pg := testenv.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE TABLE held (id int)")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	file := filepath.Join(t.TempDir(), "annotations")
	os.WriteFile(file, []byte(spec.AnnotationTimeout+`="1s"`+"\n"), 0o644)
	a, err := New(Config{Namespace: "shop", Workload: "db-0", Driver: "postgres", DSN: pg.DSN("postgres"),
		Storage: []string{"file://" + dir}, AnnotationsFile: file, Clock: newFakeClock(time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := a.trigger(ctx, triggerRequest)
	<-r.done

	res := r.result
	if res.OK || res.Interrupted || !strings.Contains(res.Error, spec.AnnotationTimeout+"=1s") || !strings.Contains(res.Error, "deadline") {
		t.Fatalf("a run past its deadline: ok %v, interrupted %v, error %q; want a failure naming %s=1s and the deadline",
			res.OK, res.Interrupted, res.Error, spec.AnnotationTimeout)
	}
	st, err := storage.Open(ctx, "file://"+dir, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	if err := st.List(ctx, "", func(o storage.Object) error { left = append(left, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("the stopped run left %q", left)
	}
	t.Logf("failed as expected: %s", res.Error)
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		6 * time.Hour: "6h", 90 * time.Minute: "1h30m", time.Second: "1s", 90 * time.Second: "1m30s", 168 * time.Hour: "168h", time.Minute: "1m",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
}
