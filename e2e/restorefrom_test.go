//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/control"
	"remora.dev/remora/drivers/postgres"
)

// restoreFrom: a PostgreSQL StatefulSet with physical backups, then a new
// StatefulSet annotated remora.dev/restore-from that comes up with the
// source's data, recovered by the init container the webhook adds; its pod
// deleted and made again keeps its data (restore --if-empty does nothing);
// and a pod naming another namespace's backups is refused.
//
// The source streams its WAL (remora.dev/pitr): the copy is recovered to
// a time between two commits, with the one before there and the one after
// not.
func restoreFrom(t *testing.T, parent *node) {
	n := *parent
	n.t = t
	n.apply(ledgerStatefulSet("ledger", `{remora.dev/method: physical, remora.dev/schedule: "@every 5m", remora.dev/pitr: "on", remora.dev/pitr-flush: "1s"}`, `emptyDir: {}`))
	src := n.readyPod(workload{pod: "ledger-0"})
	n.mustBeInjected(src, workload{container: "postgres"})
	n.must("-n", "shop", "exec", src, "-c", "postgres", "--", "sh", "-c", psql("postgres", `CREATE DATABASE app`)+" && "+
		psql("app", `CREATE TABLE ledger (id int PRIMARY KEY, note text); INSERT INTO ledger VALUES (1, 'before the backup')`))
	if out := n.must("-n", "shop", "exec", src, "-c", "remora", "--", "remora", "backup", "--wait"); !strings.Contains(out, "complete") {
		t.Fatalf("backup --wait: %s", out)
	}
	if items := n.list(src); len(items) == 0 || items[len(items)-1].Method != "physical" {
		t.Fatalf("no physical backup listed: %+v", items)
	}
	sql := func(q string) string {
		return strings.TrimSpace(n.must("-n", "shop", "exec", src, "-c", "postgres", "--", "sh", "-c", psql("app", q)))
	}
	sql(`INSERT INTO ledger VALUES (2, 'after the backup, before the target')`)
	target, err := time.Parse("2006-01-02 15:04:05.999999-07", sql(`SELECT clock_timestamp()`))
	if err != nil {
		t.Fatal(err)
	}
	sql(`INSERT INTO ledger VALUES (9, 'after the target')`)
	want, _ := postgres.ParseLSN(sql(`SELECT pg_current_wal_insert_lsn()`))
	n.waitFor("the source's WAL archived past "+want.String(), 2*time.Minute, func() bool {
		out, err := n.kubectl("-n", "shop", "exec", src, "-c", "remora", "--", "remora", "status", "--json")
		var st control.Status
		if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.WAL == nil {
			return false
		}
		got, err := postgres.ParseLSN(st.WAL.Stored)
		return err == nil && got >= want
	})

	// A volume that outlives its pod, as a claim would: the second pod
	// finds the data the first one restored.
	dir := filepath.Join(t.TempDir(), "ledger-restored")
	os.MkdirAll(dir, 0o755)
	os.Chmod(dir, 0o777) // a hostPath keeps the host's owner: let the database's user write
	n.apply(ledgerStatefulSet("ledger-restored", fmt.Sprintf(`{remora.dev/restore-from: "shop/ledger-0@%s"}`, target.UTC().Format(time.RFC3339Nano)),
		fmt.Sprintf(`hostPath: {path: %q, type: Directory}`, dir)))
	pod := n.readyPod(workload{pod: "ledger-restored-0"})
	n.mustBeInjected(pod, workload{container: "postgres"})
	if log := n.must("-n", "shop", "logs", pod, "-c", "remora-restore"); !strings.Contains(log, "recovery to "+target.UTC().Format(time.RFC3339Nano)+" configured") {
		t.Errorf("the restore's log:\n%s", log)
	}
	rows := func() string {
		return strings.TrimSpace(n.must("-n", "shop", "exec", pod, "-c", "postgres", "--", "sh", "-c",
			psql("app", `SELECT string_agg(id::text, ',' ORDER BY id) FROM ledger`)))
	}
	if got := rows(); got != "1,2" {
		t.Fatalf("restored rows %q, want 1,2 (committed before the target; 9 after it)", got)
	}
	// Promoted: it takes writes.
	n.must("-n", "shop", "exec", pod, "-c", "postgres", "--", "sh", "-c", psql("app", `INSERT INTO ledger VALUES (3, 'written in the copy')`))

	n.must("-n", "shop", "delete", "pod", pod, "--wait=true")
	pod = n.readyPod(workload{pod: "ledger-restored-0"})
	if log := n.must("-n", "shop", "logs", pod, "-c", "remora-restore"); !strings.Contains(log, "already holds a data directory: nothing restored") {
		t.Errorf("the second start's restore log:\n%s", log)
	}
	if got := rows(); got != "1,2,3" {
		t.Fatalf("rows after the pod was made again %q, want 1,2,3: the data directory must be left alone", got)
	}

	n.apply(ledgerStatefulSet("ledger-other", `{remora.dev/restore-from: "billing/ledger-0@latest"}`, `emptyDir: {}`))
	n.waitFor("the refusal of another namespace's backups", 60*time.Second, func() bool {
		out, _ := n.kubectl("-n", "shop", "get", "events", "--field-selector", "involvedObject.name=ledger-other", "-o", "jsonpath={.items[*].message}")
		return strings.Contains(out, "restores from its own namespace's backups")
	})
	n.must("-n", "shop", "delete", "statefulset", "ledger-other", "--wait=true")
}

// ledgerStatefulSet is a one-replica PostgreSQL StatefulSet with the pod
// annotations (a flow-style map) and the data volume's source (e.g.
// "emptyDir: {}").
func ledgerStatefulSet(name, annotations, volume string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: %[1]s, namespace: shop}
spec:
  serviceName: %[1]s
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata:
      labels: {app: %[1]s}
      annotations: %[2]s
    spec:
      containers:
      - name: postgres
        image: localhost/remora-e2e/postgres:1
        imagePullPolicy: Never
        env: [{name: POSTGRES_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}, {name: PGDATA, value: /var/lib/postgresql/data/pgdata}]
        readinessProbe: {exec: {command: [sh, -c, "pg_isready -q -h 127.0.0.1"]}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
      volumes: [{name: data, %[3]s}]
`, name, annotations, volume)
}
