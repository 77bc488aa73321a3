# env.sh: the settings every script of the one-node cluster shares. Sourced, never run. Each can be set in the
# environment.
#
#   NODE_BIN    kubelet kube-controller-manager kube-scheduler kubectl kube-apiserver etcd (hack/node-binaries.sh)
#   NODE_CACHE  what outlives a node: the unpacked runtime debs (containerd, runc, CNI plugins), the pause image
#   NODE_PKG    where runtime.sh unpacks containerd, runc and the CNI plugins; "" when they are apt-installed
#   NODE_WORK   the running node's files (etcd data, PKI, containerd and kubelet roots, logs, pids);
#               stop.sh --purge deletes it
#   NODE_STATE  run-time state under /run: containerd's state dir and socket, pod network namespaces
#   NODE_IMAGES image tarballs start.sh imports (space-separated)
NODE_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODE_ROOT=$(cd "$NODE_SRC/../.." && pwd)
NODE_CACHE=${NODE_CACHE:-${REMORA_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/remora}/node-runtime}
NODE_BIN=${NODE_BIN:-$("$NODE_ROOT/hack/node-binaries.sh" --dir)}
NODE_PKG=${NODE_PKG-$NODE_CACHE/root}
NODE_WORK=${NODE_WORK:-${REMORA_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/remora}/node-work}
NODE_STATE=${NODE_STATE:-/run/remora-node}
NODE_IMAGES=${NODE_IMAGES:-$NODE_CACHE/image/pause.tar}
NODE_NAME=${NODE_NAME:-remora-node}   # Node name, certificate CN, CNI network name
NODE_BRIDGE=${NODE_BRIDGE:-rmbr0}
NODE_NET=${NODE_NET:-10.177.0}        # a /24: the node (bridge) is .1, pods get .10-.250
NODE_IP=$NODE_NET.1
POD_SUBNET=$NODE_NET.0/24
SERVICE_NET=${SERVICE_NET:-10.0.0}    # a /24 of ClusterIPs; .1 is the API server's `kubernetes` Service
ETCD_PORT=${ETCD_PORT:-12379} ETCD_PEER=${ETCD_PEER:-12380} KAS_PORT=${KAS_PORT:-16443}
KCM_PORT=${KCM_PORT:-10257} SCHED_PORT=${SCHED_PORT:-10259}
KUBELET_PORT=${KUBELET_PORT:-10250} KUBELET_HEALTHZ=${KUBELET_HEALTHZ:-10248}
CTR_SOCK=$NODE_STATE/containerd/containerd.sock
# Pods reach the API server at the `kubernetes` Service (ClusterIP .1, port 443), as in any cluster: there is
# no kube-proxy, so one NAT rule, tagged with this comment, sends that address to the API server on the bridge.
NODE_NAT_TAG="remora-node: kubernetes Service"

# The scripts delete and unmount below NODE_WORK and NODE_STATE: refuse anything that is not an absolute folder
# at least two levels deep (an empty value or "/" would otherwise reach the whole machine).
node_check_dirs() {
  local v d
  for v in NODE_CACHE NODE_WORK NODE_STATE; do
    d=${!v}
    case $d in
      /*/*) ;;
      *) echo "$v=\"$d\" must be an absolute path at least two levels deep" >&2; return 1 ;;
    esac
    case $d in *..*|*//*|*/) echo "$v=\"$d\": no '..', '//' or trailing '/'" >&2; return 1 ;; esac
  done
}
