#!/usr/bin/env bash
# Remora's main demo: a throwaway one-node Kubernetes cluster on this machine
# (hack/node: kubelet, containerd, runc; the control plane built from pinned
# modules), then the operator's path, each command printed as it would be
# typed: helm install, a labelled namespace, the storage Secret, a PostgreSQL
# StatefulSet with sample data, remora status, a backup, list, a restore under
# a new name and a comparison of every table. Everything is torn down at the
# end. Run it with `make demo`, which builds what is missing first (the node's
# binaries once, about 10 minutes on 2 cores; the images with podman). Needs
# root (the node makes a bridge, mounts and cgroups).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
[ "$(id -u)" -eq 0 ] || { echo "demo: the one-node cluster needs root" >&2; exit 1; }

if [ -t 1 ]; then
  BOLD=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' GREEN=$'\e[32m' RESET=$'\e[0m'
else
  BOLD='' DIM='' RED='' GREEN='' RESET=''
fi
say() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
die() { printf '%sdemo: %s%s\n' "$RED" "$*" "$RESET" >&2; exit 1; }
run() { printf '%s$ %s%s\n' "$BOLD" "$*" "$RESET"; "$@"; }
T0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }

IMAGES=${REMORA_E2E_IMAGES:?run through make demo (it builds the images)}
TMP=$(mktemp -d /tmp/remora-demo.XXXXXX)
export NODE_WORK=$TMP/node
. hack/node/env.sh
export NODE_IMAGES="$NODE_CACHE/image/pause.tar $(ls "$IMAGES"/*.tar | tr '\n' ' ')"
export KUBECONFIG=$NODE_WORK/pki/admin.kubeconfig PATH=$NODE_BIN:$PATH
HELM=${REMORA_HELM:-$ROOT/bin/helm}
helm() { "$HELM" "$@"; }
S3_ACCESS=demo S3_SECRET=demo-secret-key S3_REGION=us-east-1
S3PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1]); s.close()')
PGPW=demo-password

cleanup() {
  local rc=$?
  if [ $rc -ne 0 ] && [ -f "$NODE_WORK/kubelet.log" ]; then
    kubectl get pods -A -o wide 2>/dev/null || true
    tail -n 15 "$NODE_WORK/kubelet.log" >&2 || true
  fi
  say "Tearing everything down"
  hack/node/stop.sh --purge >"$TMP/stop.log" 2>&1 || cat "$TMP/stop.log" >&2
  [ -n "${S3PID:-}" ] && kill "$S3PID" 2>/dev/null && wait "$S3PID" 2>/dev/null
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT

say "Starting a one-node Kubernetes cluster (kubelet + containerd) and importing the images"
hack/node/runtime.sh >"$TMP/runtime.log" 2>&1 || { cat "$TMP/runtime.log"; die "runtime.sh failed"; }
hack/node/start.sh >"$TMP/start.log" 2>&1 || { tail -20 "$TMP/start.log"; die "the node did not start"; }
run kubectl get nodes
echo "    (ready after $(elapsed))"

say "An S3-compatible server on this machine, where the pods keep their backups"
# (its posix backend keeps a bucket as a folder)
mkdir -p "$TMP/s3/backups"
"${REMORA_VERSITYGW:-$ROOT/bin/versitygw}" --port "0.0.0.0:$S3PORT" --access "$S3_ACCESS" --secret "$S3_SECRET" \
  --region "$S3_REGION" --health /health --quiet posix "$TMP/s3" >"$TMP/s3.log" 2>&1 &
S3PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$S3PORT/health" >/dev/null && break; sleep 0.1; done
echo "    versitygw on $NODE_IP:$S3PORT (the node's bridge), bucket backups"

say "Installing Remora with its Helm chart"
run helm install remora charts/remora -n remora-system --create-namespace \
  --set image.repository=localhost/remora --set image.tag=dev --set image.pullPolicy=Never --set webhook.replicas=1 \
  --set storage.s3.endpoint="$NODE_IP:$S3PORT" --set storage.s3.bucket=backups --set storage.s3.region=$S3_REGION \
  --set storage.s3.insecure=true --wait --timeout 3m

say "Turning injection on for namespace shop, with its storage keys and a signing key"
run kubectl create namespace shop
run kubectl label namespace shop remora.dev/injection=enabled
run bin/remora keygen --out "$TMP/shop-signing.pem"
run kubectl -n shop create secret generic remora-storage --from-literal=AWS_ACCESS_KEY_ID=$S3_ACCESS \
  --from-literal=AWS_SECRET_ACCESS_KEY=$S3_SECRET --from-file=REMORA_SIGNING_KEY="$TMP/shop-signing.pem"
run kubectl -n shop create secret generic db --from-literal=password=$PGPW

say "A PostgreSQL StatefulSet: the webhook adds the sidecar"
cat >"$TMP/db.yaml" <<'YAML'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata:
      labels: {app: db}
      annotations: {remora.dev/schedule: "@daily"}
    spec:
      containers:
      - name: postgres
        image: localhost/remora-e2e/postgres:1
        imagePullPolicy: Never
        env:
        - {name: POSTGRES_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
        - {name: PGDATA, value: /var/lib/postgresql/data/pgdata}
        readinessProbe: {exec: {command: [pg_isready, -q, -h, 127.0.0.1]}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
      volumes: [{name: data, emptyDir: {}}]
YAML
sed 's/^/    /' "$TMP/db.yaml"
run kubectl apply -f "$TMP/db.yaml"
run kubectl -n shop wait --for=condition=Ready pod/db-0 --timeout=180s
run kubectl -n shop get pod db-0 -o 'jsonpath={range .spec.initContainers[*]}{.name} (restartPolicy {.restartPolicy}){"\n"}{end}{range .spec.containers[*]}{.name}{"\n"}{end}'

say "Sample data"
psql() { kubectl -n shop exec db-0 -c postgres -- psql -X -q -At -U postgres "$@"; }
run psql -c "CREATE DATABASE shop"
run psql -d shop -c "CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(12,2), placed timestamptz);
  INSERT INTO orders SELECT g, 'customer ' || (g % 977), (g * 1.37)::numeric(12,2), now() - g * interval '1 minute' FROM generate_series(1, 100000) g;
  CREATE TABLE customers AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 977) g;"

say "What the sidecar is doing"
run kubectl -n shop exec db-0 -c remora -- remora status

say "A backup now, then the list"
run kubectl -n shop exec db-0 -c remora -- remora backup --wait
run kubectl -n shop exec db-0 -c remora -- remora list

say "Restoring database shop as shop_restored, inside the pod"
run kubectl -n shop exec db-0 -c remora -- remora restore --latest --database shop --into shop_restored

say "Comparing every table"
mismatch=0
for table in orders customers; do
  a=$(psql -d shop -c "SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id)) FROM $table t")
  b=$(psql -d shop_restored -c "SELECT count(*) || ':' || md5(string_agg(t::text, ',' ORDER BY id)) FROM $table t")
  if [ "$a" = "$b" ]; then r="${GREEN}same${RESET}"; else r="${RED}DIFFERENT${RESET}"; mismatch=1; fi
  printf '    %-10s %-45s %s\n' "$table" "$a" "$r"
done
[ $mismatch -eq 0 ] || die "the restored database differs from the original"
printf '\n%sDemo complete in %s: the restored database matches the original.%s\n' "$GREEN$BOLD" "$(elapsed)" "$RESET"
