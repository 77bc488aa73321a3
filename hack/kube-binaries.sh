#!/usr/bin/env bash
# Builds kube-apiserver and etcd (pinned in tools/kube-apiserver and tools/etcd)
# into a cache folder outside the clone, keyed by version, for the webhook's
# tests against a real API server. A cold kube-apiserver build takes 5-10
# minutes on 2 cores; later runs find the binaries and return at once.
# Prints the folder; with --dir it only prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
K8S=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' tools/kube-apiserver/go.mod)
ETCD=$(awk '$1=="go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' tools/etcd/go.mod)
OUT="${REMORA_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/remora}/kube-${K8S#v}-etcd-${ETCD#v}"
if [ "${1:-}" = "--dir" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$OUT"
if [ ! -x "$OUT/kube-apiserver" ]; then
  v=${K8S#v}; major=${v%%.*}; rest=${v#*.}; minor=${rest%%.*}
  echo "kube-binaries: building kube-apiserver $K8S into $OUT (minutes, once)" >&2
  go -C tools/kube-apiserver build -trimpath -o "$OUT/kube-apiserver.tmp" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
    k8s.io/kubernetes/cmd/kube-apiserver
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
fi
if [ ! -x "$OUT/etcd" ]; then
  echo "kube-binaries: building etcd $ETCD into $OUT" >&2
  go -C tools/etcd build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi
echo "$OUT"
