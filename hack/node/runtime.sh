#!/usr/bin/env bash
# runtime.sh: what the node runs besides the Kubernetes binaries, made once into $NODE_CACHE:
#   - Debian's containerd, runc and containernetworking-plugins, `apt-get download`ed and unpacked with `dpkg -x`
#     into $NODE_PKG (nothing is installed system-wide, no daemon is started; with NODE_PKG="" the apt-installed
#     ones are used);
#   - the pod sandbox image localhost/remora-node/pause:1 (a static Go binary that sleeps and reaps), as a
#     `docker save` tarball that start.sh imports: nothing is pulled from a registry.
set -euo pipefail
. "$(dirname "$0")/env.sh"
node_check_dirs
# The host tools the scripts use, named one by one (never through a Recommends).
missing=()
for t in iptables:iptables ip:iproute2 ss:iproute2 sysctl:procps openssl:openssl curl:curl python3:python3; do
  command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "runtime: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PKG=$NODE_PKG
if [ -z "$PKG" ]; then
  for b in containerd runc; do command -v $b >/dev/null || { echo "NODE_PKG is empty but $b is not in PATH" >&2; exit 1; }; done
elif ! { [ -x "$PKG/usr/bin/containerd" ] && [ -x "$PKG/usr/sbin/runc" ] && [ -x "$PKG/usr/lib/cni/bridge" ]; }; then
  DEBS=$NODE_CACHE/debs
  mkdir -p "$DEBS" "$PKG"
  [ -n "$(find /var/lib/apt/lists -name '*Packages*' -print -quit 2>/dev/null)" ] || apt-get update -qq
  (cd "$DEBS" && apt-get download containerd runc containernetworking-plugins 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  for d in "$DEBS"/*.deb; do dpkg -x "$d" "$PKG"; done
  "$PKG/usr/bin/containerd" --version; "$PKG/usr/sbin/runc" --version | head -1
fi
I=$NODE_CACHE/image
if [ ! -f "$I/pause.tar" ]; then
  mkdir -p "$I/rootfs-pause"
  CGO_ENABLED=0 go build -C "$NODE_SRC/pause" -buildvcs=false -trimpath -ldflags='-s -w' -o "$I/rootfs-pause/pause" .
  python3 "$NODE_SRC/mkimage.py" "$I/pause.tar.tmp" localhost/remora-node/pause:1 "$I/rootfs-pause" /pause >/dev/null
  mv "$I/pause.tar.tmp" "$I/pause.tar"
fi
