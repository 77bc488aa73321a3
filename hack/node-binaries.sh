#!/usr/bin/env bash
# Builds the node's Kubernetes binaries (kubelet, kube-controller-manager,
# kube-scheduler, kubectl: pinned in tools/kube-node) into a cache
# folder outside the clone, keyed by version, and links kube-apiserver and
# etcd from hack/kube-binaries.sh beside them. A cold build takes about 5
# minutes on 2 cores (each binary says when it is done); later runs find the
# binaries and return at once. Prints the folder; with --dir it only prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
K8S=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' tools/kube-node/go.mod)
OUT="${REMORA_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/remora}/node-${K8S#v}"
if [ "${1:-}" = "--dir" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$OUT"
KAS=$(hack/kube-binaries.sh)
for n in kube-apiserver etcd; do ln -sf "$KAS/$n" "$OUT/$n"; done
v=${K8S#v}; rest=${v#*.}; minor=${rest%%.*}
LDF="-s -w -X k8s.io/component-base/version.gitVersion=$K8S -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
LDF="$LDF -X k8s.io/client-go/pkg/version.gitVersion=$K8S -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
names=(kubelet kube-controller-manager kube-scheduler kubectl)
todo=()
for n in "${names[@]}"; do [ -x "$OUT/$n" ] || todo+=("$n"); done
if [ ${#todo[@]} -gt 0 ]; then
  echo "node-binaries: building ${todo[*]} $K8S into $OUT (about 3 minutes each on 2 cores, once)" >&2
fi
for n in "${todo[@]}"; do
  s=$(date +%s)
  go -C tools/kube-node build -trimpath -ldflags "$LDF" -o "$OUT/$n.tmp" "k8s.io/kubernetes/cmd/$n"
  mv "$OUT/$n.tmp" "$OUT/$n"
  echo "node-binaries: $n built in $(( $(date +%s) - s )) s" >&2
done
echo "$OUT"
