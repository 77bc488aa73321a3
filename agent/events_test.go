package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/yaml"

	"remora.dev/remora/internal/kube"
	"remora.dev/remora/internal/testenv"
)

// syncBuffer is a log destination the agent's goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// applyChartEventsRBAC renders the chart with events.namespaces=ns and
// creates the Role and RoleBinding it makes there.
func applyChartEventsRBAC(t *testing.T, k *testenv.Kube, ns string) {
	out, err := exec.Command(testenv.Helm(t), "template", "remora", filepath.Join(testenv.RepoRoot(), "charts", "remora"), "--namespace", "remora-system",
		"--kube-version", "1.33.0", "--set", "events.namespaces={"+ns+"}").Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	applied := 0
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			break
		}
		meta, _ := m["metadata"].(map[string]any)
		if meta == nil || meta["namespace"] != ns {
			continue
		}
		path := map[string]string{"Role": "roles", "RoleBinding": "rolebindings"}[m["kind"].(string)]
		k.Do(t, http.MethodPost, "/apis/rbac.authorization.k8s.io/v1/namespaces/"+ns+"/"+path, m, nil)
		applied++
	}
	if applied != 2 {
		t.Fatalf("the chart made %d objects in %s, want a Role and a RoleBinding", applied, ns)
	}
}

// podClient makes namespace ns, a service account and a pod db-0 running
// as it, and returns a client with that account's token and the pod's UID.
func podClient(t *testing.T, k *testenv.Kube, ns string) (*kube.Client, string) {
	k.Do(t, http.MethodPost, "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": ns}}, nil)
	k.Do(t, http.MethodPost, "/api/v1/namespaces/"+ns+"/serviceaccounts", map[string]any{"metadata": map[string]any{"name": "db"}}, nil)
	var pod struct{ Metadata struct{ UID string } }
	k.Do(t, http.MethodPost, "/api/v1/namespaces/"+ns+"/pods", map[string]any{"metadata": map[string]any{"name": "db-0"},
		"spec": map[string]any{"serviceAccountName": "db", "containers": []any{map[string]any{"name": "db", "image": "postgres"}}}}, &pod)
	var tr struct{ Status struct{ Token string } }
	k.Do(t, http.MethodPost, "/api/v1/namespaces/"+ns+"/serviceaccounts/db/token", map[string]any{"spec": map[string]any{}}, &tr)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := kube.New(kube.Config{Server: k.Server, TokenFile: tok, CAFile: k.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	return c, pod.Metadata.UID
}

// podEvents lists the Events `kubectl describe pod db-0` shows.
func podEvents(t *testing.T, k *testenv.Kube, ns, uid string) map[string]string {
	sel := url.QueryEscape("involvedObject.name=db-0,involvedObject.namespace=" + ns + ",involvedObject.kind=Pod,involvedObject.uid=" + uid)
	var list struct {
		Items []struct{ Reason, Message, Type string }
	}
	k.Do(t, http.MethodGet, "/api/v1/namespaces/"+ns+"/events?fieldSelector="+sel, nil, &list)
	out := map[string]string{}
	for _, e := range list.Items {
		out[e.Reason] = e.Type + ": " + e.Message
	}
	return out
}

// TestEventsOnThePod: against a real API server, with the chart's Role, the
// agent reports invalid annotations and a failed backup as Warning Events
// that `kubectl describe pod` shows; in a namespace the chart was not told
// about, the API server refuses (403), which the agent logs once however
// many Events it tries, and it carries on.
func TestEventsOnThePod(t *testing.T) {
	k := testenv.StartKube(t)
	client, uid := podClient(t, k, "shop")
	applyChartEventsRBAC(t, k, "shop")
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ev := NewEvents(client, "shop", "db-0", uid, log)

	file := filepath.Join(t.TempDir(), "annotations")
	os.WriteFile(file, []byte(`remora.dev/schedule="whenever"`+"\n"), 0o644)
	a, err := New(Config{Namespace: "shop", Workload: "db-0", Driver: "postgres", Storage: []string{"file://" + t.TempDir()},
		AnnotationsFile: file, Clock: newFakeClock(time.Now()), Events: ev, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	a.backupFn = func(context.Context, *run) error { return errors.New("pg_dump: connection refused") }
	r, started := a.trigger(t.Context(), triggerRequest)
	if !started {
		t.Fatal("no backup started")
	}
	<-r.done
	ev.Wait()
	got := podEvents(t, k, "shop", uid)
	if !strings.HasPrefix(got[ReasonInvalidAnnotations], "Warning: the remora.dev annotations are not valid") ||
		!strings.Contains(got[ReasonBackupFailed], "pg_dump: connection refused") || !strings.HasPrefix(got[ReasonBackupFailed], "Warning: ") {
		t.Fatalf("events on the pod: %q\nlog:\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), "Kubernetes Event") {
		t.Errorf("the agent logged a failure to report:\n%s", logs.String())
	}

	locked, lockedUID := podClient(t, k, "locked")
	var lockedLogs syncBuffer
	ev = NewEvents(locked, "locked", "db-0", lockedUID, slog.New(slog.NewTextHandler(&lockedLogs, nil)))
	for range 3 {
		ev.Warning(ReasonBackupFailed, "backup failed")
		ev.Wait()
	}
	if n := strings.Count(lockedLogs.String(), "may not create events"); n != 1 || !strings.Contains(lockedLogs.String(), "403") {
		t.Fatalf("logged the refusal %d times, want once with the 403:\n%s", n, lockedLogs.String())
	}
	if got := podEvents(t, k, "locked", lockedUID); len(got) != 0 {
		t.Fatalf("events where none may be created: %q", got)
	}
}
