#!/usr/bin/env bash
# stop.sh [--purge]: stops what start.sh started, by PID only, then unmounts what the kubelet and containerd
# mounted under $NODE_WORK and $NODE_STATE, removes their cgroups, the bridge and the NAT rule, and restores the
# sysctls. --purge also deletes $NODE_WORK (etcd data, containerd images, certificates); $NODE_CACHE and the
# binaries stay. Settings: env.sh (use the same values as for start.sh).
set -uo pipefail
. "$(dirname "$0")/env.sh"
node_check_dirs || exit 1
BIN=$NODE_BIN PKG=$NODE_PKG WORK=$NODE_WORK STATE=$NODE_STATE BR=$NODE_BRIDGE
export PATH=$BIN${PKG:+:$PKG/usr/bin:$PKG/usr/sbin}:$PATH
export KUBECONFIG=$WORK/pki/admin.kubeconfig
CTR="ctr -a $CTR_SOCK -n k8s.io"

alive() { [ -f "$WORK/$1.pid" ] && kill -0 "$(cat "$WORK/$1.pid")" 2>/dev/null; }
# stop_pid NAME PID [GRACE_S]: TERM, then KILL after the grace period
stop_pid() {
  local n=$1 p=$2 g=${3:-15}
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 1 $((g * 10))); do kill -0 "$p" 2>/dev/null || { echo "$n ($p) stopped"; return 0; }; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null; echo "$n ($p) killed"
}
# stop NAME [GRACE_S]: the PID in $WORK/NAME.pid, only if that process still runs NAME (no PID reuse accidents)
stop() {
  local f="$WORK/$1.pid" p
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  case $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") in
    "$1 "*|*/"$1 "*) stop_pid "$1" "$p" "${2:-15}" ;;
  esac
  rm -f "$f"
}

# 1. no controller may recreate pods; then the kubelet stops them gracefully (CNI DEL included)
stop kube-controller-manager 10
stop kube-scheduler 10
if alive kube-apiserver && alive kubelet && [ -x "$BIN/kubectl" ]; then
  timeout 60 "$BIN/kubectl" delete pods --all --all-namespaces --wait=true --timeout=50s >/dev/null 2>&1 || true
  # the kubelet stops the sandboxes (pause container + network) a moment after the pod objects are gone
  for _ in $(seq 1 50); do
    [ -z "$($CTR tasks ls -q 2>/dev/null)" ] && break; sleep 0.2
  done
fi
stop kubelet 20

# 2. whatever the kubelet left: kill the tasks and remove the containers (sandboxes included)
if alive containerd; then
  for c in $($CTR containers ls -q 2>/dev/null); do
    $CTR tasks kill -s KILL "$c" >/dev/null 2>&1 || true
  done
  sleep 1
  for c in $($CTR containers ls -q 2>/dev/null); do
    $CTR tasks rm -f "$c" >/dev/null 2>&1 || true
    $CTR containers rm "$c" >/dev/null 2>&1 || true
  done
fi
stop containerd 15
# containerd-shim-runc-v2 processes outlive containerd: stop those that serve our socket, by PID
for d in /proc/[0-9]*; do
  cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
  case $cmd in *containerd-shim*"$CTR_SOCK"*) stop_pid shim "${d#/proc/}" 5 ;; esac
done

# 3. the control plane
stop kube-apiserver 20
stop etcd 10

# 4. mounts (overlay rootfs, shm, netns, projected/secret tmpfs volumes), deepest first
for m in $(awk -v w="$WORK" -v s="$STATE" 'index($5, w"/")==1 || index($5, s"/")==1 {print $5}' /proc/self/mountinfo | sort -r); do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "could not unmount $m"
done

# 5. cgroups the kubelet (kubepods) and runc created; rmdir only removes empty ones
for top in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/*/k8s.io; do
  [ -d "$top" ] && find "$top" -depth -type d -exec rmdir {} \; 2>/dev/null
done
left=$(find /sys/fs/cgroup -maxdepth 2 \( -name kubepods -o -name k8s.io \) -type d 2>/dev/null)
[ -n "$left" ] && echo "cgroups left: $left"

# 6. network: the bridge (pod veths went with their netns) and the `kubernetes` Service's NAT rule
ip link show "$BR" >/dev/null 2>&1 && ip link del "$BR" && echo "bridge $BR deleted"
while iptables -t nat -D PREROUTING -i "$BR" -d "$SERVICE_NET.1" -p tcp --dport 443 -m comment --comment "$NODE_NAT_TAG" \
    -j DNAT --to-destination "$NODE_IP:$KAS_PORT" 2>/dev/null; do echo "NAT rule removed"; done

# 7. fixed host paths: CNI result cache (/var/lib/cni/results/$NODE_NAME-*), device-plugin socket,
#    /var/log/containers symlinks into our podLogsDir; the folders go only if start-node.sh found none
for f in /var/lib/cni/results/"$NODE_NAME"-*; do
  [ -e "$f" ] || continue
  id=${f#/var/lib/cni/results/"$NODE_NAME"-}; id=${id%-eth0}
  rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
done
rm -f /var/lib/kubelet/device-plugins/kubelet.sock
for l in /var/log/containers/*.log; do
  case $(readlink "$l" 2>/dev/null) in "$WORK"/*) rm -f "$l" ;; esac
done
for d in /var/log/containers /var/lib/kubelet/device-plugins /var/lib/kubelet /var/lib/cni/results /var/lib/cni; do
  [ -d "$d" ] || continue
  grep -qx "${d%%/device-plugins}" "$WORK/host-paths.pre" 2>/dev/null && continue
  grep -qx "${d%%/results}" "$WORK/host-paths.pre" 2>/dev/null && continue
  rmdir "$d" 2>/dev/null || echo "left (not empty): $d"
done

# 8. sysctls the kubelet changed
if [ -f "$WORK/sysctl.orig" ]; then
  read -r oc panic oops oom <"$WORK/sysctl.orig"
  sysctl -q -w vm.overcommit_memory="$oc" kernel.panic="$panic" kernel.panic_on_oops="$oops" vm.panic_on_oom="$oom" \
    && rm -f "$WORK/sysctl.orig" && echo "sysctls restored"
fi
# 9. what is left of the run-time state; --purge: the work folder, unless something is still mounted in it
rm -rf "$STATE"
if [ "${1:-}" = --purge ]; then
  if awk -v w="$WORK" 'index($5, w"/")==1 {f=1} END {exit !f}' /proc/self/mountinfo; then
    echo "not removing $WORK: still mounted below it"
  else
    rm -rf "$WORK" && echo "$WORK removed"
  fi
fi
echo "stopped"
