//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
	"remora.dev/remora/repo"
)

// workload is one database (or files) the operator protects.
type workload struct {
	name      string // the StatefulSet or Deployment
	pod       string // its first pod (a Deployment's is looked up by label)
	container string // the database container
	manifest  string
	// seed writes sample data; sum prints a checksum of what restore must
	// bring back, in db (the original) or into (the restored copy).
	seed string
	sum  func(into bool) string
	// damage, if set, changes the data after the backup (a restore in
	// place must bring back what sum printed before).
	damage  string
	restore []string // the restore's arguments after --latest
	// pointInTime, if set, switches on log streaming and restores to a
	// time between two transactions.
	pointInTime func(n *node, pod string, w workload)
}

// TestOperatorPath runs the operator's whole path on a real one-node
// cluster: helm install, a labelled namespace, the storage Secret, then for
// each database a workload whose pods get the sidecar, back up on their
// schedule and on request, restore identical data, show metrics, survive a
// killed sidecar and a deleted pod; then the webhook scaled to zero and a
// helm upgrade.
func TestOperatorPath(t *testing.T) {
	n := startNode(t)
	s3 := testenv.StartS3Everywhere(t)
	s3.MakeBucket(t, "e2e")
	port := strings.TrimPrefix(s3.Endpoint, "127.0.0.1:")

	n.helm("install", "remora", "charts/remora", "-n", "remora-system", "--create-namespace",
		"--set", "image.repository=localhost/remora", "--set", "image.tag=dev", "--set", "image.pullPolicy=Never",
		"--set", "webhook.replicas=1", "--set", "storage.s3.endpoint="+nodeIP+":"+port, "--set", "storage.s3.bucket=e2e",
		"--set", "storage.s3.region="+s3.Region, "--set", "storage.s3.insecure=true", "--wait", "--timeout", "3m")
	ca := n.must("-n", "remora-system", "get", "secret", "remora-webhook-tls", "-o", "jsonpath={.data.ca\\.crt}")

	n.must("create", "namespace", "shop")
	n.must("label", "namespace", "shop", "remora.dev/injection=enabled")
	keys := t.TempDir()
	signing, _, keyID, err := repo.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(keys, "signing.pem"), signing, 0o600)
	n.must("-n", "shop", "create", "secret", "generic", "remora-storage",
		"--from-literal=AWS_ACCESS_KEY_ID="+s3.AccessKey, "--from-literal=AWS_SECRET_ACCESS_KEY="+s3.SecretKey,
		"--from-file=REMORA_SIGNING_KEY="+filepath.Join(keys, "signing.pem"))
	n.must("-n", "shop", "create", "secret", "generic", "db", "--from-literal=password="+testenv.Canary)

	for _, w := range workloads() {
		t.Run(w.name, func(t *testing.T) { operate(t, n, w, keyID) })
	}
	t.Run("a StatefulSet restored from another's backups", func(t *testing.T) { restoreFrom(t, n) })
	t.Run("webhook down", func(t *testing.T) { webhookDown(t, n) })
	t.Run("helm upgrade", func(t *testing.T) { helmUpgrade(t, n, ca) })
	t.Run("backups on a volume the chart mounts", func(t *testing.T) { volumeStorage(t, n) })
}

// volumeStorage: with storage.volume the chart gives every new sidecar a
// volume (here a hostPath standing in for an NFS export) and backs up to
// file:// on it.
func volumeStorage(t *testing.T, parent *node) {
	n := *parent
	n.t = t
	dir := filepath.Join(t.TempDir(), "exports")
	os.MkdirAll(dir, 0o755)
	os.Chmod(dir, 0o1777) // a hostPath keeps the host's owner: let the sidecar's user write
	n.helm("upgrade", "remora", "charts/remora", "-n", "remora-system", "--reuse-values",
		"--set-json", `storage.volume={"hostPath":{"path":"`+dir+`","type":"Directory"}}`, "--wait", "--timeout", "3m")
	n.must("-n", "remora-system", "rollout", "status", "deployment/remora-webhook", "--timeout=120s")
	n.apply(filesDeployment("on-volume", "{runAsUser: 999, fsGroup: 999}"))
	pod := n.readyPod(workload{name: "on-volume"})
	n.mustBeInjected(pod, workload{container: "app"})
	n.must("-n", "shop", "exec", pod, "-c", "app", "--", "sh", "-c", "echo hello > /data/greeting")
	n.must("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "backup", "--wait")
	items := n.list(pod)
	if len(items) == 0 {
		t.Fatal("no backup listed")
	}
	manifest := filepath.Join(dir, "shop", "on-volume", "files", items[len(items)-1].ID, "manifest.json")
	if _, err := os.Stat(manifest); err != nil {
		t.Fatalf("the backup is not on the volume: %v", err)
	}
	n.must("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "verify")
}

// operate runs one workload through the operator's path.
func operate(t *testing.T, parent *node, w workload, keyID string) {
	n := *parent
	n.t = t
	n.apply(w.manifest)
	pod := n.readyPod(w)
	n.mustBeInjected(pod, w)
	n.must("-n", "shop", "exec", pod, "-c", w.container, "--", "sh", "-c", w.seed)

	// A schedule set live reaches the agent within 2 seconds.
	n.must("-n", "shop", "annotate", "pod", pod, "remora.dev/schedule=@every 1m", "--overwrite")
	took := n.waitFor("the new schedule in remora status", 10*time.Second, func() bool {
		out, _ := n.kubectl("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "status")
		return strings.Contains(out, "@every 1m")
	})
	t.Logf("the annotation reached remora status in %s", took.Round(10*time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the schedule took %s to reach the agent, want at most 2s", took)
	}

	// A scheduled backup by itself, then one on request; both signed.
	n.waitFor("a scheduled backup", 150*time.Second, func() bool { return len(n.list(pod)) > 0 })
	out := n.must("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "backup", "--wait")
	if !strings.Contains(out, "complete") {
		t.Fatalf("backup --wait: %s", out)
	}
	items := n.list(pod)
	for _, it := range items {
		if !it.Signed {
			t.Errorf("backup %s is not signed", it.ID)
		}
	}
	n.must("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "verify")
	// A restore drill inside the sidecar: a throwaway server, as the
	// database's user, within the sidecar's memory limit.
	if out := n.must("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "drill", "--latest"); !strings.Contains(out, "drill OK") {
		t.Errorf("remora drill --latest:\n%s", out)
	}
	if st := n.must("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "status"); !strings.Contains(st, keyID) {
		t.Errorf("status does not name the signing key %s:\n%s", keyID, st)
	}

	// Restore (beside the original, or over damaged data); the checksums
	// must match.
	want := n.must("-n", "shop", "exec", pod, "-c", w.container, "--", "sh", "-c", w.sum(false))
	if w.damage != "" {
		n.must("-n", "shop", "exec", pod, "-c", w.container, "--", "sh", "-c", w.damage)
	}
	n.must(append([]string{"-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "restore", "--latest"}, w.restore...)...)
	got := n.must("-n", "shop", "exec", pod, "-c", w.container, "--", "sh", "-c", w.sum(true))
	if strings.TrimSpace(want) == "" || want != got {
		t.Fatalf("restored data differs:\noriginal %s\nrestored %s", want, got)
	}
	t.Logf("restored identical: %s", strings.TrimSpace(want))
	if w.pointInTime != nil {
		w.pointInTime(&n, pod, w)
	}

	n.scrapeMetrics(pod)
	n.killSidecar(pod, w)
	n.replacePod(pod, w, len(n.list(pod)))
}

// readyPod waits until the workload's first pod is Ready and returns its
// name.
func (n *node) readyPod(w workload) string {
	n.t.Helper()
	pod := w.pod
	if pod == "" {
		n.waitFor("the Deployment's pod", 60*time.Second, func() bool {
			out, _ := n.kubectl("-n", "shop", "get", "pods", "-l", "app="+w.name, "-o", "jsonpath={.items[0].metadata.name}")
			pod = strings.TrimSpace(out)
			return pod != ""
		})
	}
	n.must("-n", "shop", "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=180s")
	return pod
}

// mustBeInjected checks that the sidecar is a native sidecar (an init
// container that restarts always) and that both containers are ready.
func (n *node) mustBeInjected(pod string, w workload) {
	n.t.Helper()
	var p struct {
		Spec struct {
			InitContainers []struct {
				Name          string `json:"name"`
				RestartPolicy string `json:"restartPolicy"`
			} `json:"initContainers"`
		} `json:"spec"`
		Status struct {
			PodIP                 string            `json:"podIP"`
			ContainerStatuses     []containerStatus `json:"containerStatuses"`
			InitContainerStatuses []containerStatus `json:"initContainerStatuses"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(n.must("-n", "shop", "get", "pod", pod, "-o", "json")), &p); err != nil {
		n.t.Fatal(err)
	}
	native := false
	for _, c := range p.Spec.InitContainers {
		native = native || c.Name == "remora" && c.RestartPolicy == "Always"
	}
	if !native {
		n.t.Fatalf("pod %s has no native remora sidecar: %+v", pod, p.Spec.InitContainers)
	}
	for _, s := range append(p.Status.ContainerStatuses, p.Status.InitContainerStatuses...) {
		if (s.Name == "remora" || s.Name == w.container) && !s.Ready {
			n.t.Errorf("container %s of %s is not ready", s.Name, pod)
		}
	}
}

type containerStatus struct {
	Name         string `json:"name"`
	Ready        bool   `json:"ready"`
	RestartCount int    `json:"restartCount"`
	ContainerID  string `json:"containerID"`
}

// list runs `remora list --json` in the pod's sidecar.
func (n *node) list(pod string) []repo.Listing {
	n.t.Helper()
	out, err := n.kubectl("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "list", "--json")
	if err != nil {
		return nil
	}
	var items []repo.Listing
	if err := json.Unmarshal([]byte(out), &items); err != nil {
		n.t.Fatalf("remora list --json: %v\n%s", err, out)
	}
	return items
}

// scrapeMetrics reads the sidecar's metrics at the pod's IP, from the node.
func (n *node) scrapeMetrics(pod string) {
	n.t.Helper()
	ip := strings.TrimSpace(n.must("-n", "shop", "get", "pod", pod, "-o", "jsonpath={.status.podIP}"))
	resp, err := http.Get("http://" + ip + ":9464/metrics")
	if err != nil {
		n.t.Fatalf("metrics at %s: %v", ip, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	v := testenv.MetricValue(string(b), "remora_backup_last_success_timestamp_seconds")
	if f, err := strconv.ParseFloat(v, 64); err != nil || f < float64(time.Now().Add(-10*time.Minute).Unix()) {
		n.t.Errorf("remora_backup_last_success_timestamp_seconds at %s: %q", ip, v)
	}
	testenv.NoCanary(n.t, "the metrics", string(b))
}

// statuses reads the restart counts of the pod's containers.
func (n *node) statuses(pod string) map[string]containerStatus {
	n.t.Helper()
	var p struct {
		Status struct {
			ContainerStatuses     []containerStatus `json:"containerStatuses"`
			InitContainerStatuses []containerStatus `json:"initContainerStatuses"`
		} `json:"status"`
	}
	json.Unmarshal([]byte(n.must("-n", "shop", "get", "pod", pod, "-o", "json")), &p)
	out := map[string]containerStatus{}
	for _, s := range append(p.Status.ContainerStatuses, p.Status.InitContainerStatuses...) {
		out[s.Name] = s
	}
	return out
}

// killSidecar kills the sidecar's process with SIGKILL in containerd: the
// kubelet restarts it, the database container is left alone, and the
// backups are still listed.
func (n *node) killSidecar(pod string, w workload) {
	n.t.Helper()
	before := n.statuses(pod)
	id := strings.TrimPrefix(before["remora"].ContainerID, "containerd://")
	sock := strings.TrimSpace(n.script(n.env, "bash", "-c", ". hack/node/env.sh && echo $CTR_SOCK"))
	ctr := strings.TrimSpace(n.script(n.env, "bash", "-c", ". hack/node/env.sh && echo ${NODE_PKG:+$NODE_PKG/usr/bin/}ctr"))
	n.script(n.env, ctr, "-a", sock, "-n", "k8s.io", "tasks", "kill", "-s", "KILL", id)
	n.waitFor("the sidecar restarted and ready", 90*time.Second, func() bool {
		s := n.statuses(pod)["remora"]
		return s.RestartCount > before["remora"].RestartCount && s.Ready
	})
	if after := n.statuses(pod)[w.container]; after.RestartCount != before[w.container].RestartCount {
		n.t.Errorf("killing the sidecar restarted the database container (%d → %d)", before[w.container].RestartCount, after.RestartCount)
	}
	if len(n.list(pod)) == 0 {
		n.t.Error("no backups listed after the sidecar restarted")
	}
}

// replacePod deletes the pod: the new one (a StatefulSet's keeps the name,
// a Deployment's keeps the workload name) finds the backups.
func (n *node) replacePod(pod string, w workload, had int) {
	n.t.Helper()
	n.must("-n", "shop", "delete", "pod", pod, "--wait=true")
	newPod := n.readyPod(w)
	if got := len(n.list(newPod)); got < had {
		n.t.Errorf("the new pod %s lists %d backups, the old one %d", newPod, got, had)
	}
}

// webhookDown: with the webhook scaled to zero, a new pod still starts
// (failurePolicy Ignore), without a sidecar, and the API server counts the
// miss in apiserver_admission_webhook_fail_open_count.
func webhookDown(t *testing.T, parent *node) {
	n := *parent
	n.t = t
	n.must("-n", "remora-system", "scale", "deployment", "remora-webhook", "--replicas=0")
	n.must("-n", "remora-system", "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/name=remora", "--timeout=60s")
	n.apply(filesDeployment("uninjected", ""))
	pod := n.readyPod(workload{name: "uninjected"})
	if out := n.must("-n", "shop", "get", "pod", pod, "-o", "jsonpath={.spec.initContainers[*].name}"); strings.Contains(out, "remora") {
		t.Fatalf("a pod admitted without the webhook has a sidecar: %s", out)
	}
	metrics := n.must("get", "--raw", "/metrics")
	if !strings.Contains(metrics, `apiserver_admission_webhook_fail_open_count{name="inject.remora.dev"`) {
		t.Errorf("the API server did not count the webhook's miss:\n%s", grepLines(metrics, "webhook_fail_open"))
	}
	n.must("-n", "remora-system", "scale", "deployment", "remora-webhook", "--replicas=1")
	n.must("-n", "remora-system", "rollout", "status", "deployment/remora-webhook", "--timeout=120s")
}

// helmUpgrade: an upgrade keeps the webhook's CA, and injected pods keep
// running.
func helmUpgrade(t *testing.T, parent *node, ca string) {
	n := *parent
	n.t = t
	before := n.must("-n", "shop", "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount}{\"\\n\"}{end}")
	n.helm("upgrade", "remora", "charts/remora", "-n", "remora-system", "--reuse-values", "--set", "webhook.timeoutSeconds=6", "--wait", "--timeout", "3m")
	if after := n.must("-n", "remora-system", "get", "secret", "remora-webhook-tls", "-o", "jsonpath={.data.ca\\.crt}"); after != ca {
		t.Error("helm upgrade replaced the webhook's CA")
	}
	after := n.must("-n", "shop", "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount}{\"\\n\"}{end}")
	if before != after {
		t.Errorf("pods changed over helm upgrade:\n%s\n%s", before, after)
	}
	// A pod made after the upgrade is injected again.
	n.apply(filesDeployment("after-upgrade", "{runAsUser: 999, fsGroup: 999}"))
	pod := n.readyPod(workload{name: "after-upgrade"})
	n.mustBeInjected(pod, workload{container: "app"})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// workloads are the databases of the test, each as its operator would write it.
func workloads() []workload {
	return []workload{
		{
			name: "pg", pod: "pg-0", container: "postgres", manifest: statefulSet("pg", "postgres", "localhost/remora-e2e/postgres:1",
				`[{name: POSTGRES_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}, {name: PGDATA, value: /var/lib/postgresql/data/pgdata}]`,
				"/var/lib/postgresql/data", "", "pg_isready -q -h 127.0.0.1"),
			seed: psql("postgres", `CREATE DATABASE app`) + " && " + psql("app", `CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(12,2), items jsonb, note bytea);
INSERT INTO orders SELECT g, 'customer ' || (g % 977), (g * 1.37)::numeric(12,2), jsonb_build_object('sku', g % 113), decode(md5(g::text), 'hex') FROM generate_series(1, 20000) g;`),
			sum: func(into bool) string {
				db := map[bool]string{false: "app", true: "app_copy"}[into]
				return psql(db, `SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id)) FROM orders t`)
			},
			restore: []string{"--database", "app", "--into", "app_copy"},
		},
		{
			name: "maria", pod: "maria-0", container: "mariadb", manifest: statefulSet("maria", "mariadb", "localhost/remora-e2e/mariadb:1",
				`[{name: MARIADB_ROOT_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}]`, "/var/lib/mysql", "",
				`MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb-admin -uroot -h127.0.0.1 ping`),
			seed: mariadb(`CREATE DATABASE app; USE app; CREATE TABLE orders (id int PRIMARY KEY, customer text, total decimal(12,2), note blob);
INSERT INTO orders SELECT seq, concat('customer ', seq % 977), seq * 1.37, unhex(md5(seq)) FROM seq_1_to_20000;`),
			sum: func(into bool) string {
				db := map[bool]string{false: "app", true: "app_copy"}[into]
				return mariadb(`SELECT count(*), md5(group_concat(concat_ws(':', id, customer, total, hex(note)) ORDER BY id SEPARATOR ',')) FROM ` + db + `.orders`)
			},
			restore:     []string{"--database", "app", "--into", "app_copy"},
			pointInTime: mariadbPointInTime,
		},
		{
			name: "cache", pod: "cache-0", container: "redis", manifest: statefulSet("cache", "redis", "localhost/remora-e2e/redis:1",
				`[{name: REDIS_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}]`, "/data", "{runAsUser: 0}",
				redis("ping")),
			seed: redis(`EVAL "for i=1,5000 do redis.call('SET','k'..i, string.rep('v', i % 97)); redis.call('HSET','h'..(i%50), 'f'..i, i) end" 0`),
			// The restore replaces the keyspace in place: the digest of
			// every key and value before the damage must come back.
			sum:     func(bool) string { return redis("DEBUG DIGEST") },
			damage:  redis("FLUSHALL") + " && " + redis("SET only-after-the-backup 1"),
			restore: []string{"--yes"},
		},
		{name: "files", container: "app", manifest: filesDeployment("files", "{runAsUser: 999, runAsGroup: 999, fsGroup: 999}"),
			seed: `mkdir -p /data/docs && for i in $(seq 1 200); do head -c $((i * 97)) /dev/urandom > /data/docs/f$i; done`,
			sum: func(into bool) string {
				return `cd ` + map[bool]string{false: "/data", true: "/data/restored/data"}[into] + ` && find docs -type f | sort | xargs sha256sum | sha256sum`
			},
			restore: []string{"--into", "/data/restored"},
		},
	}
}

// mariadbPointInTime switches binary log streaming on live, takes a dump,
// and restores the database to a time between two transactions, from
// inside the sidecar.
func mariadbPointInTime(n *node, pod string, w workload) {
	n.must("-n", "shop", "annotate", "pod", pod, "remora.dev/pitr=on", "remora.dev/pitr-flush=1s", "--overwrite")
	var status string
	defer func() {
		if n.t.Failed() {
			logs, _ := n.kubectl("-n", "shop", "logs", pod, "-c", "remora", "--tail=40")
			n.t.Logf("remora status:\n%s\nthe sidecar's log:\n%s", status, logs)
		}
	}()
	n.waitFor("binary log streaming", time.Minute, func() bool {
		status, _ = n.kubectl("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "status")
		return strings.Contains(status, "Binary log    streaming")
	})
	n.must("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "backup", "--wait")
	sql := func(q string) string {
		return strings.TrimSpace(n.must("-n", "shop", "exec", pod, "-c", w.container, "--", "sh", "-c", mariadb(q)))
	}
	sql("INSERT INTO app.orders VALUES (30001, 'A', 1, NULL)")
	first := sql("SELECT UNIX_TIMESTAMP()")
	n.waitFor("the server's clock to pass a second", 10*time.Second, func() bool { return sql("SELECT UNIX_TIMESTAMP()") != first })
	target := sql("SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%H:%i:%sZ')")
	sql("INSERT INTO app.orders VALUES (30002, 'B', 2, NULL)")
	end := strings.Fields(sql("SHOW MASTER STATUS"))
	n.waitFor("the binary log archived", time.Minute, func() bool {
		out, _ := n.kubectl("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "status")
		return len(end) > 1 && archivedPast(out, end[0], end[1])
	})
	n.must("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "restore", "--to-time", target, "--database", "app", "--into", "app_pitr")
	if got := sql("SELECT GROUP_CONCAT(customer ORDER BY id) FROM app_pitr.orders WHERE id > 30000"); got != "A" {
		n.t.Errorf("restored to %s: %q, want A", target, got)
	}
	if out := n.must("-n", "shop", "exec", pod, "-c", "remora", "--", "remora", "verify"); !strings.Contains(out, "BINLOG OK") {
		n.t.Errorf("verify:\n%s", out)
	}
}

// archivedPast reports whether remora status says the binary log is
// archived up to file@pos or past it.
func archivedPast(status, file, pos string) bool {
	_, rest, ok := strings.Cut(status, "archived up to ")
	if !ok {
		return false
	}
	gf, gp, _ := strings.Cut(strings.Fields(rest)[0], "@")
	gn, _ := strconv.Atoi(strings.TrimRight(gp, ","))
	want, _ := strconv.Atoi(pos)
	return gf > file || gf == file && gn >= want
}

// psql, mariadb and redis are shell commands run in the database's own
// container, with the password from its environment. SQL is put on one line:
// the clients read a backslash-n as one of their own commands.
func psql(db, sql string) string {
	return fmt.Sprintf("PGPASSWORD=\"$POSTGRES_PASSWORD\" psql -X -q -At -U postgres -h 127.0.0.1 -d %s -c %q", db, oneLine(sql))
}

func mariadb(sql string) string {
	return fmt.Sprintf("MYSQL_PWD=\"$MARIADB_ROOT_PASSWORD\" mariadb -uroot -h127.0.0.1 -N -e %q", oneLine(sql))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func redis(args string) string {
	return "REDISCLI_AUTH=\"$REDIS_PASSWORD\" redis-cli --no-auth-warning " + args
}

// statefulSet is a one-replica StatefulSet of a database image, with the
// pod's securityContext if one is given, ready when the shell command ready
// succeeds.
func statefulSet(name, container, image, env, dataPath, securityContext, ready string) string {
	sc := ""
	if securityContext != "" {
		sc = "\n      securityContext: " + securityContext
	}
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
      annotations: {remora.dev/schedule: "@every 5m"}
    spec:%[6]s
      containers:
      - name: %[2]s
        image: %[3]s
        imagePullPolicy: Never
        env: %[4]s
        readinessProbe: {exec: {command: [sh, -c, %[7]q]}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: %[5]s}]
      volumes: [{name: data, emptyDir: {}}]
`, name, container, image, env, dataPath, sc, ready)
}

// filesDeployment is an application whose /data the sidecar backs up as
// files, with the pod's securityContext if one is given.
func filesDeployment(name, securityContext string) string {
	sc := ""
	if securityContext != "" {
		sc = "\n      securityContext: " + securityContext
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata:
      labels: {app: %[1]s}
      annotations: {remora.dev/driver: files, remora.dev/container: app, remora.dev/paths: /data, remora.dev/schedule: "@every 5m"}
    spec:%[2]s
      containers:
      - name: app
        image: localhost/remora-e2e/postgres:1
        imagePullPolicy: Never
        command: [sh, -c, "mkdir -p /data && exec sleep infinity"]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
`, name, sc)
}
