#!/usr/bin/env bash
# Prepares podman for the end-to-end test on a machine with no container
# registry: the packages, two host settings podman 4.3 needs on some hosts,
# and a Debian base image made with debootstrap (cached in podman's storage).
set -euo pipefail
SUITE="${REMORA_BASE_SUITE:-trixie}"
BASE="localhost/remora-base:$SUITE"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# podman only Recommends an init for its pause container; `podman kube play`
# fails without one ("finding pause binary").
command -v catatonit >/dev/null || [ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
if [ ${#missing[@]} -gt 0 ]; then
  echo "podman-setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# crun refuses hybrid cgroup v1+v2 hosts (runc works), and without
# CAP_SYS_RESOURCE podman's default rlimits fail; an existing configuration
# is left alone.
conf=/etc/containers/containers.conf
if [ ! -e "$conf" ]; then
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  $SUDO mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n' "$nofile" "$nofile" | $SUDO tee "$conf" >/dev/null
  echo "podman-setup: wrote $conf" >&2
fi

if ! podman image exists "$BASE"; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "podman-setup: debootstrap $SUITE into $BASE (about a minute, once)" >&2
  $SUDO debootstrap --variant=minbase "$SUITE" "$work/rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$work/rootfs" -c . | podman import - "$BASE" >/dev/null
fi
echo "$BASE"
