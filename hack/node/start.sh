#!/usr/bin/env bash
# start.sh: a real one-node Kubernetes cluster on this machine (kubelet, containerd, runc, the CNI bridge plugin;
# the control plane from hack/node-binaries.sh), on loopback and on one bridge it creates
# ($NODE_BRIDGE, $NODE_NET.1/24; defaults rmbr0, 10.177.0.1):
#   etcd 127.0.0.1:12379 | kube-apiserver $NODE_IP:16443 | kube-controller-manager 127.0.0.1:10257
#   kube-scheduler 127.0.0.1:10259 | containerd (unix socket in $NODE_STATE) | kubelet $NODE_IP:10250
# Pods get $NODE_NET.10-250 on the bridge (CNI bridge + host-local, the node as their gateway, no masquerade).
# They reach the API server as in any cluster, at the `kubernetes` Service ($SERVICE_NET.1:443): one NAT rule
# on the bridge stands in for kube-proxy. The API server reaches webhooks at their pods' IPs
# (--enable-aggregator-routing). State, pids and logs: $NODE_WORK. Stop with stop.sh (by PID). Settings: env.sh.
# Prints the KUBECONFIG line last.
set -euo pipefail
. "$(dirname "$0")/env.sh"
node_check_dirs
BIN=$NODE_BIN PKG=$NODE_PKG WORK=$NODE_WORK STATE=$NODE_STATE
NODE=$NODE_NAME BR=$NODE_BRIDGE
P=$WORK/pki
export PATH=$BIN${PKG:+:$PKG/usr/bin:$PKG/usr/sbin}:$PATH
now_ms() { date +%s%3N; }
T0=$(now_ms)
log() { echo "[$(( $(now_ms) - T0 )) ms] $*"; }
die() { echo "FAILED: $*" >&2; exit 1; }
# start NAME CMD...: background, log to $WORK/NAME.log, pid to $WORK/NAME.pid ($! is the daemon itself:
# a simple command, never `cd X && cmd &`, whose $! would be a subshell)
start() {
  local n=$1; shift
  "$@" >"$WORK/$n.log" 2>&1 &
  echo $! >"$WORK/$n.pid"
}
# wait_for NAME TIMEOUT_S CMD...: until CMD succeeds, failing if NAME's process died
wait_for() {
  local n=$1 t=$2; shift 2
  local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$(cat "$WORK/$n.pid")" 2>/dev/null || { tail -30 "$WORK/$n.log"; die "$n exited"; }
    [ "$(date +%s)" -lt "$end" ] || { tail -30 "$WORK/$n.log"; die "$n not ready after ${t}s"; }
    sleep 0.2
  done
}

for b in etcd kube-apiserver kubelet containerd runc kube-controller-manager kube-scheduler kubectl iptables; do
  command -v $b >/dev/null || die "$b not found in PATH ($PATH)"
done
CNI_BIN=${PKG:+$PKG/usr/lib/cni}; [ -n "$CNI_BIN" ] && [ -x "$CNI_BIN/bridge" ] || CNI_BIN=/usr/lib/cni
[ -x "$CNI_BIN/bridge" ] || die "CNI plugins not found"
for f in $NODE_IMAGES; do [ -f "$f" ] || die "image $f not found (runtime.sh)"; done
for port in $ETCD_PORT $ETCD_PEER $KAS_PORT $KCM_PORT $SCHED_PORT $KUBELET_PORT $KUBELET_HEALTHZ; do
  ss -Hltn "sport = :$port" | grep -q . && die "port $port is in use"
done
mkdir -p "$WORK" "$STATE/containerd" "$WORK/cni/net.d" "$WORK/cni/ipam" "$WORK/kubelet" "$WORK/containerd"

# The kubelet sets vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1 (protectKernelDefaults=false);
# keep the old values so that stop-node.sh can put them back.
[ -f "$WORK/sysctl.orig" ] || sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops vm.panic_on_oom \
  | paste -sd' ' >"$WORK/sysctl.orig"

# Fixed host paths that the kubelet and containerd create whatever the config says; stop-node.sh removes
# them again if they did not exist before.
[ -f "$WORK/host-paths.pre" ] || for d in /var/log/containers /var/lib/kubelet /var/lib/cni; do
  [ -e "$d" ] && echo "$d"; done >"$WORK/host-paths.pre"

# --- the node's own address: a bridge we own (the kubelet refuses a loopback node IP) -----------------
if ! ip link show "$BR" >/dev/null 2>&1; then
  ip link add "$BR" type bridge
  ip addr add "$NODE_IP/24" dev "$BR"
  ip link set "$BR" up
fi
log "bridge $BR $NODE_IP up"
# The `kubernetes` Service, without kube-proxy: pods (whose gateway is the node) reach the API server at the
# address the kubelet gives them (KUBERNETES_SERVICE_HOST/PORT).
iptables -t nat -C PREROUTING -i "$BR" -d "$SERVICE_NET.1" -p tcp --dport 443 -m comment --comment "$NODE_NAT_TAG" \
    -j DNAT --to-destination "$NODE_IP:$KAS_PORT" 2>/dev/null ||
  iptables -t nat -A PREROUTING -i "$BR" -d "$SERVICE_NET.1" -p tcp --dport 443 -m comment --comment "$NODE_NAT_TAG" \
    -j DNAT --to-destination "$NODE_IP:$KAS_PORT"

# --- certificates and kubeconfigs ---------------------------------------------------------------------
NODE_NAME=$NODE KAS="https://$NODE_IP:$KAS_PORT" SERVICE_IP="$SERVICE_NET.1" "$NODE_SRC/pki.sh" "$P" "$NODE_IP"
export KUBECONFIG=$P/admin.kubeconfig
log "pki ready"

# --- etcd ------------------------------------------------------------------------------------------------
start etcd etcd --name="$NODE" --data-dir="$WORK/etcd" \
  --listen-client-urls=http://127.0.0.1:$ETCD_PORT --advertise-client-urls=http://127.0.0.1:$ETCD_PORT \
  --listen-peer-urls=http://127.0.0.1:$ETCD_PEER --initial-advertise-peer-urls=http://127.0.0.1:$ETCD_PEER \
  --initial-cluster="$NODE=http://127.0.0.1:$ETCD_PEER" --listen-metrics-urls= \
  --unsafe-no-fsync=true --log-level=warn
wait_for etcd 30 curl -sf http://127.0.0.1:$ETCD_PORT/health
log "etcd healthy"

# --- kube-apiserver --------------------------------------------------------------------------------------
start kube-apiserver kube-apiserver \
  --etcd-servers=http://127.0.0.1:$ETCD_PORT \
  --bind-address=$NODE_IP --secure-port=$KAS_PORT \
  --advertise-address=$NODE_IP --endpoint-reconciler-type=none --enable-aggregator-routing=true \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" \
  --service-cluster-ip-range=$SERVICE_NET.0/24 \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$P/ca.crt" --kubelet-preferred-address-types=InternalIP
wait_for kube-apiserver 90 sh -c "[ \"\$(curl -s --cacert '$P/ca.crt' --cert '$P/admin.crt' --key '$P/admin.key' https://$NODE_IP:$KAS_PORT/readyz)\" = ok ]"
log "kube-apiserver ready"

# --- kube-controller-manager and kube-scheduler ----------------------------------------------------------
start kube-controller-manager kube-controller-manager \
  --kubeconfig="$P/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$P/controller-manager.kubeconfig" --authorization-kubeconfig="$P/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=$KCM_PORT --leader-elect=false \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" --use-service-account-credentials=true \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --flex-volume-plugin-dir="$WORK/kcm-volume-plugins"
start kube-scheduler kube-scheduler \
  --kubeconfig="$P/scheduler.kubeconfig" \
  --authentication-kubeconfig="$P/scheduler.kubeconfig" --authorization-kubeconfig="$P/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=$SCHED_PORT --leader-elect=false
wait_for kube-controller-manager 60 curl -skf https://127.0.0.1:$KCM_PORT/healthz
wait_for kube-scheduler 60 curl -skf https://127.0.0.1:$SCHED_PORT/healthz
log "controller-manager and scheduler healthy"

# --- containerd + CNI ------------------------------------------------------------------------------------
cat >"$WORK/cni/net.d/10-$NODE.conflist" <<CONF
{
  "cniVersion": "1.0.0",
  "name": "$NODE",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BR", "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$WORK/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "$NODE_NET.10", "rangeEnd": "$NODE_NET.250", "gateway": "$NODE_IP"}]]
      }
    }
  ]
}
CONF
cat >"$WORK/containerd.toml" <<CONF
version = 2
root = "$WORK/containerd"
state = "$STATE/containerd"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CTR_SOCK"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$WORK/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/remora-node/pause:1"
  # no CAP_SYS_RESOURCE here: never ask runc for an oom_score_adj below containerd's own
  restrict_oom_score_adj = ${RESTRICT_OOM:-true}
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$WORK/cni/net.d"
CONF
start containerd containerd --config "$WORK/containerd.toml"
CTR="ctr -a $CTR_SOCK -n k8s.io"
wait_for containerd 30 $CTR version
for img in $NODE_IMAGES; do $CTR images import "$img" >/dev/null; done
log "containerd up, images imported: $($CTR images ls -q | grep -v '^sha256:' | paste -sd' ')"

# --- kubelet ---------------------------------------------------------------------------------------------
cat >"$WORK/kubelet.yaml" <<CONF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
staticPodPath: ""
volumePluginDir: $WORK/kubelet/volume-plugins
podLogsDir: $WORK/pod-logs
rotateCertificates: false
serverTLSBootstrap: false
syncFrequency: 10s
imageGCHighThresholdPercent: 100
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"}
CONF
KUBELET_START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
start kubelet kubelet --config="$WORK/kubelet.yaml" --kubeconfig="$P/kubelet.kubeconfig" \
  --hostname-override="$NODE" --node-ip="$NODE_IP" --root-dir="$WORK/kubelet" --cert-dir="$WORK/kubelet/pki" --v=2
wait_for kubelet 90 curl -sf http://127.0.0.1:$KUBELET_HEALTHZ/healthz
log "kubelet healthy"
# Ready=True with a heartbeat from this kubelet (a Node object kept in etcd from an earlier run may say Ready)
api_get() { curl -sf --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "https://$NODE_IP:$KAS_PORT$1"; }
node_ready() {
  api_get "/api/v1/nodes/$NODE" |
    python3 -c 'import json,sys; c=[x for x in json.load(sys.stdin)["status"]["conditions"] if x["type"]=="Ready"]; sys.exit(0 if c and c[0]["status"]=="True" and c[0]["lastHeartbeatTime"]>=sys.argv[1] else 1)' "$KUBELET_START"
}
wait_for kubelet 120 node_ready
log "node $NODE Ready"
# pods need the namespace's default ServiceAccount and kube-root-ca.crt, which the controller-manager creates
wait_for kube-controller-manager 60 api_get /api/v1/namespaces/default/serviceaccounts/default
wait_for kube-controller-manager 60 api_get /api/v1/namespaces/default/configmaps/kube-root-ca.crt
log "default ServiceAccount and kube-root-ca.crt present"
"$BIN/kubectl" get nodes -o wide >&2
echo "export KUBECONFIG=$P/admin.kubeconfig PATH=$BIN:\$PATH"
