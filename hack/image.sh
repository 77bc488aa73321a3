#!/usr/bin/env bash
# Builds the Remora image with podman: `hack/image.sh [TAG]`. With the default
# BASE and BUILDER (localhost/...), both are made here first when missing, so
# no registry is needed: the base with debootstrap (hack/podman-setup.sh), the
# builder from it plus this machine's Go toolchain. BASE=docker.io/library/debian:trixie-slim
# BUILDER=docker.io/library/golang:1.26-trixie use the registry's instead.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-localhost/remora:dev}"
BASE="${BASE:-localhost/remora-base:trixie}"
GOVER=$(go env GOVERSION)
BUILDER="${BUILDER:-localhost/remora-builder:$GOVER}"
VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"

case "$BASE" in localhost/remora-base:*) REMORA_BASE_SUITE="${BASE##*:}" hack/podman-setup.sh >/dev/null ;; esac
if [[ "$BUILDER" == localhost/remora-builder:* ]] && ! podman image exists "$BUILDER"; then
  # This machine's Go toolchain, and its CA bundle so that the module proxy
  # is trusted as it is here (some networks intercept TLS).
  echo "image: making $BUILDER from $BASE and $(go env GOROOT)" >&2
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp -a "$(go env GOROOT)" "$ctx/go"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
  cat > "$ctx/Containerfile" <<CF
FROM $BASE
COPY go /usr/local/go
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GOTOOLCHAIN=local
CF
  podman build -q -t "$BUILDER" "$ctx" >/dev/null
fi
podman build -t "$TAG" --build-arg BASE="$BASE" --build-arg BUILDER="$BUILDER" \
  --build-arg GOPROXY="$(go env GOPROXY)" --build-arg VERSION="$VERSION" . >&2
echo "$TAG"
