#!/usr/bin/env bash
# pki.sh DIR NODE_IP : a CA, the API server's serving cert, client certs for each component,
# the kubelet's serving cert, the service-account key pair, and kubeconfigs. Idempotent.
set -euo pipefail
P=$1; NODE_IP=$2; NODE=${NODE_NAME:?}; KAS=${KAS:?}; SERVICE_IP=${SERVICE_IP:?}
mkdir -p "$P"; cd "$P"
[ -f ca.crt ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
  -subj "/CN=remora-node-ca" 2>/dev/null
# cert NAME SUBJECT [SANs]
cert() {
  local n=$1 subj=$2 san=${3:-}
  [ -f "$n.crt" ] && return 0
  openssl req -newkey rsa:2048 -nodes -keyout "$n.key" -out "$n.csr" -subj "$subj" 2>/dev/null
  if [ -n "$san" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$n.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' > "$n.ext"
  fi
  openssl x509 -req -in "$n.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$n.crt" -days 3650 \
    -extfile "$n.ext" 2>/dev/null
  rm -f "$n.csr" "$n.ext"
}
cert apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:$SERVICE_IP,IP:$NODE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
cert admin "/O=system:masters/CN=remora-node-admin"
cert kubelet "/O=system:nodes/CN=system:node:$NODE"
cert kubelet-serving "/CN=$NODE" "IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
[ -f sa.key ] || { openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; }
for n in admin kubelet controller-manager scheduler; do
  cat > "$n.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: remora-node
  cluster: {server: $KAS, certificate-authority: $P/ca.crt}
users:
- name: $n
  user: {client-certificate: $P/$n.crt, client-key: $P/$n.key}
contexts:
- name: remora-node
  context: {cluster: remora-node, user: $n}
current-context: remora-node
KC
done
