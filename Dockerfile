# Remora: one image for the admission webhook and the injected sidecar. It
# carries remora and the database client tools it drives: pg_dump, pg_restore
# and psql (PostgreSQL 17, which dumps servers back to 9.2), mariadb-dump and
# mariadb, redis-cli, and redis-server for online Redis restores.
#
#   docker build -t remora .          # or podman build; pulls from Docker Hub
#   make image                        # the same file, with a base and a builder
#                                     # made locally when no registry is reachable
ARG BUILDER=docker.io/library/golang:1.26-trixie
ARG BASE=docker.io/library/debian:trixie-slim

FROM ${BUILDER} AS build
ARG GOPROXY=https://proxy.golang.org,direct
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X remora.dev/remora/internal/version.version=${VERSION}" \
      -o /out/remora ./cmd/remora

FROM ${BASE}
# postgresql-17 and mariadb-server-core are the servers of restore drills
# (remora drill): no cluster is made at install time. initdb and
# mariadb-install-db refuse a user without a passwd entry, and the webhook
# runs the sidecar as the database's user: 65532 (the default) and the uids
# of the common database images (999: postgres, mysql, mariadb, redis;
# 1001: bitnami; 70: alpine postgres; 26: Red Hat postgresql) get one.
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates postgresql-client mariadb-client redis-server redis-tools postgresql-17 mariadb-server-core \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* /var/lib/postgresql/* \
 && echo 'remora:x:65532:65532::/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && for id in 999 1001 70 26; do getent passwd $id >/dev/null || echo "db$id:x:$id:$id::/tmp:/usr/sbin/nologin" >> /etc/passwd; done
COPY --from=build /out/remora /usr/local/bin/remora
# Non-root by default; the webhook gives the sidecar the database's user. Only
# /tmp and /run/remora (emptyDirs in the pod) are written, so the root
# filesystem can be read-only.
USER 65532:65532
ENTRYPOINT ["remora"]
CMD ["agent"]
