#!/usr/bin/env bash
# Builds the images the end-to-end test runs on the one-node cluster, with
# podman (no registry: the Debian base is made locally, hack/podman-setup.sh):
# Remora's own (hack/image.sh) and PostgreSQL, MariaDB and Redis images shaped
# like the official ones (e2e/<name>/Containerfile). Each is saved as a
# `docker save` tarball that the node's containerd imports, into a cache
# folder outside the clone; a tarball is written again only when its image
# changed. Prints the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${REMORA_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/remora}/e2e-images"
IMAGE="${IMAGE:-localhost/remora:dev}"
BASE="${BASE:-localhost/remora-base:trixie}"
mkdir -p "$OUT"
hack/image.sh "$IMAGE" >/dev/null
save() { # save NAME IMAGE
  local id; id=$(podman image inspect --format '{{.Id}}' "$2")
  if [ "$(cat "$OUT/$1.id" 2>/dev/null)" != "$id" ] || [ ! -f "$OUT/$1.tar" ]; then
    rm -f "$OUT/$1.tar"
    podman save --format docker-archive -o "$OUT/$1.tar.tmp" "$2" >/dev/null
    mv "$OUT/$1.tar.tmp" "$OUT/$1.tar"
    echo "$id" > "$OUT/$1.id"
    echo "e2e-images: saved $2" >&2
  fi
}
save remora "$IMAGE"
for db in postgres mariadb redis; do
  podman build -q -t "localhost/remora-e2e/$db:1" --build-arg BASE="$BASE" "e2e/$db" >/dev/null
  save "$db" "localhost/remora-e2e/$db:1"
done
echo "$OUT"
